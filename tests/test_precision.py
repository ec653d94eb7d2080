"""--precision: what auto picks, what a bfloat16 graph holds, and that training in it learns the same.

This machine may or may not multiply bfloat16 natively; the detection is forced either way here,
and graphs are built with an explicit precision (TensorFlow emulates bfloat16 where the CPU lacks
it: slow, but the same numbers), so every test runs everywhere.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from capstone.captions import caption_tokens_to_indices, generate_vocabulary
from capstone.config import ModelConfig, TrainingConfig
from capstone.errors import CapstoneError
from capstone.support import precision, run_dir as runs
from capstone.support.tf_session import make_session
from capstone.training import build_training_graph, generate_batch
from synthetic import make_problem

v1 = tf.compat.v1
SMALL = ModelConfig(img_embed_size=32, img_embed_bottleneck=32, word_embed_size=32, lstm_units=64, logit_bottleneck=32)
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture
def no_bfloat16(monkeypatch):
    """A machine without native bfloat16, whatever this one has."""
    monkeypatch.setenv(precision.DISABLE_VARIABLE, "1")


@pytest.fixture
def has_bfloat16(monkeypatch):
    monkeypatch.delenv(precision.DISABLE_VARIABLE, raising=False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\nbugs\t\t: none\n")
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "sse", "avx512f", "avx512_bf16", "amx_tile"}
    assert precision.cpu_flags(str(tmp_path / "absent")) == set()


def test_auto_follows_the_hardware(has_bfloat16):
    assert precision.bfloat16_hardware() == "CPU: avx512_bf16"
    assert precision.resolve("auto") == "bfloat16"
    assert precision.resolve("bfloat16") == "bfloat16"
    assert precision.resolve("float32") == "float32"


def test_auto_picks_bfloat16_only_for_the_steps_measured_faster_in_it(has_bfloat16):
    assert precision.resolve("auto", path="train:show_and_tell") == "bfloat16"
    assert precision.resolve("auto", path="train:attention") == "bfloat16"
    assert precision.resolve("auto", path="embed:inception_v3") == "bfloat16"
    for slower in ("embed:efficientnet_lite0", "embed:efficientnet_lite1", "caption"):
        assert precision.resolve("auto", path=slower) == "float32", slower
        assert precision.resolve("bfloat16", path=slower) == "bfloat16", slower  # asked for, it is given
    assert precision.step_precisions("auto", ["embed:efficientnet_lite0", "train:show_and_tell", "caption"]) == \
        {"embed:efficientnet_lite0": "float32", "train:show_and_tell": "bfloat16", "caption": "float32"}


def test_without_the_hardware_auto_is_float32_and_bfloat16_an_error(no_bfloat16):
    assert precision.bfloat16_hardware() is None
    assert precision.resolve("auto") == "float32"
    with pytest.raises(CapstoneError, match=r"--precision bfloat16: this machine has no native bfloat16.*"
                                            r"avx512_bf16.*Use --precision float32 or auto"):
        precision.resolve("bfloat16")
    with pytest.raises(CapstoneError, match="--precision: expected one of auto, float32, bfloat16, got 'half'"):
        precision.resolve("half")


def bfloat16_ops(graph):
    """Names of the ops of ``graph`` that read or make a bfloat16 tensor."""
    return sorted(op.name for op in graph.get_operations()
                  if any(t.dtype == tf.bfloat16 for t in list(op.inputs) + list(op.outputs)))


def small_problem():
    (embeds, captions, _), _ = make_problem(n_train=300, embed_size=SMALL.img_embed_size)
    vocab = generate_vocabulary(captions, min_count=1)
    return embeds, caption_tokens_to_indices(captions, vocab), vocab


@pytest.mark.parametrize("decoder", ["show_and_tell", "attention"])
def test_auto_without_bfloat16_builds_a_pure_float32_graph(no_bfloat16, decoder):
    vocab = {"#PAD#": 0, "#UNK#": 1, "#START#": 2, "#END#": 3, "a": 4}
    model = ModelConfig(**{**SMALL.__dict__, "decoder": decoder})
    plain = build_training_graph(vocab, model, TrainingConfig(precision=precision.resolve("auto")))
    assert bfloat16_ops(plain.graph) == []
    # The check sees bfloat16 where there is some: the same graph built in bfloat16 has its matmuls there.
    mixed = build_training_graph(vocab, model, TrainingConfig(precision="bfloat16"))
    assert any("MatMul" in name for name in bfloat16_ops(mixed.graph))
    # ... and nothing else changes type: every variable, Adam's moments included, is float32.
    assert {v.dtype.base_dtype for v in mixed.graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)} <= \
        {tf.float32, tf.int64}
    assert mixed.decoder.loss.dtype == tf.float32


def train_steps_with(model, vocab, indexed, embeds, config, steps, batch_size=32, checkpoint=None, loss="loss"):
    """Losses of ``steps`` Adam steps on the same seeded batches (``loss``: the decoder's tensor to record, e.g.
    the attention decoder's "cross_entropy"); saves the weights to ``checkpoint``."""
    g = build_training_graph(vocab, model, config)
    session = make_session(g.graph)
    session.run(g.init)
    rng = np.random.default_rng(0)
    losses = [session.run([g.train_op, getattr(g.decoder, loss)],
                          generate_batch(g.decoder, embeds, indexed, batch_size, 20, rng))[1] for _ in range(steps)]
    if checkpoint:
        with g.graph.as_default():  # the v1 Saver works in graph mode only
            g.saver.save(session, checkpoint, write_meta_graph=False)
    session.close()
    return np.array(losses)


def test_training_in_bfloat16_ends_within_one_percent_of_float32(tmp_path):
    embeds, indexed, vocab = small_problem()
    losses = {name: train_steps_with(SMALL, vocab, indexed, embeds, TrainingConfig(precision=name, seed=3), 150,
                                     checkpoint=str(tmp_path / name / "model"))
              for name in precision.PRECISIONS}
    end = {name: losses[name][-20:].mean() for name in losses}  # the same 20 last batches
    assert end["float32"] < 0.6 * losses["float32"][0]           # it did learn
    assert abs(end["bfloat16"] - end["float32"]) < 0.01 * end["float32"]
    # Checkpoints are float32 either way: the bfloat16 run's loads into a float32 graph and back.
    reader = tf.train.load_checkpoint(str(tmp_path / "bfloat16" / "model"))
    assert set(reader.get_variable_to_dtype_map().values()) <= {tf.float32, tf.int64}


def test_padded_bfloat16_cross_entropy_and_its_gradients_match_float32():
    """The bfloat16 logits product pads its operands to whole AMX tiles (37 rows -> 64, 120 -> 128, 970 words ->
    1024): the padding must not change a number beyond bfloat16's rounding, nor leak into a gradient. Logits
    well below 0 make any leak plain: a padded column counted in the softmax at logit 0 would dominate it."""
    from capstone.fast.ops import dense_softmax_cross_entropy

    rng = np.random.default_rng(0)
    inputs, kernel = rng.normal(size=(37, 120)).astype(np.float32), rng.normal(0, 0.1, (120, 970)).astype(np.float32)
    bias, labels = rng.normal(-4, 1, size=970).astype(np.float32), rng.integers(0, 970, 37)
    row_weights = rng.uniform(0.5, 1.5, 37).astype(np.float32)  # d loss / d xent, unequal per row
    results = {}
    for name in precision.PRECISIONS:
        graph = tf.Graph()
        with graph.as_default():
            precision.set_graph_precision(name)
            x, w, b = (tf.constant(v) for v in (inputs, kernel, bias))
            xent = dense_softmax_cross_entropy(x, w, b, tf.constant(labels))
            with v1.Session(graph=graph) as session:
                results[name] = session.run([xent, *tf.gradients(tf.reduce_sum(xent * row_weights), [x, w, b])])
    exact, rounded = results["float32"], results["bfloat16"]
    assert [r.shape for r in rounded] == [(37,), (37, 120), (120, 970), (970,)]
    for a, b in zip(exact, rounded):
        assert np.all(np.isfinite(b)) and np.abs(a - b).max() < 0.02 * np.abs(a).max() + 1e-3
    assert np.abs(exact[0] - rounded[0]).max() < 0.05   # cross-entropies ~7: rounding, not padding


def test_old_runs_were_float32():
    run = runs.load_run(os.path.join(FIXTURES, "run_v1"))
    assert run.training_config.precision == "float32"


def test_a_recorded_precision_is_checked(tmp_path):
    from capstone.config import config_from_dict

    assert config_from_dict(TrainingConfig, {"precision": "bfloat16"}, "x").precision == "bfloat16"
    with pytest.raises(CapstoneError, match="x: unknown precision 'float16'; known: float32, bfloat16"):
        config_from_dict(TrainingConfig, {"precision": "float16"}, "x")


def write_problem(tmp_path):
    """Pickles + captions.csv of the small problem; returns the train command's input flags."""
    import csv

    from utils import save_pickle

    (embeds, captions, _), _ = make_problem(n_train=100, embed_size=SMALL.img_embed_size)
    fns = [f"train_{i:04d}.jpg" for i in range(len(embeds))]
    save_pickle(embeds, str(tmp_path / "train_img_embeds.pickle"))
    save_pickle(fns, str(tmp_path / "train_img_fns.pickle"))
    with open(tmp_path / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption")] + [(fn, c) for fn, caps in zip(fns, captions) for c in caps])
    return ["--train-embeds", str(tmp_path / "train_img_embeds.pickle"),
            "--train-fns", str(tmp_path / "train_img_fns.pickle"), "--captions", str(tmp_path / "captions.csv"),
            "--epochs", "1", "--batches-per-epoch", "5", "--batch-size", "16", "--min-count", "1", "--quiet",
            "--img-embed-bottleneck", "16", "--word-embed-size", "16", "--lstm-units", "16", "--logit-bottleneck", "16"]


def test_train_records_the_precision_and_its_checkpoint_captions_in_the_other(tmp_path, capsys, monkeypatch):
    from capstone.__main__ import main

    flags = write_problem(tmp_path)
    monkeypatch.setenv(precision.DISABLE_VARIABLE, "1")
    assert main(["train", *flags, "--out", str(tmp_path / "auto")]) == 0
    capsys.readouterr()
    assert runs.load_run(str(tmp_path / "auto")).training_config.precision == "float32"
    code = main(["train", *flags, "--out", str(tmp_path / "refused"), "--precision", "bfloat16"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --precision bfloat16: this machine has no native bfloat16")
    assert len(err.strip().splitlines()) == 1 and not os.path.exists(tmp_path / "refused")

    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16"})
    monkeypatch.delenv(precision.DISABLE_VARIABLE)
    assert main(["train", *flags, "--out", str(tmp_path / "bf16")]) == 0          # auto, on bfloat16 hardware
    assert runs.load_run(str(tmp_path / "bf16")).training_config.precision == "bfloat16"
    capsys.readouterr()
    embeds = ["--embeds", str(tmp_path / "train_img_embeds.pickle"), "--fns", str(tmp_path / "train_img_fns.pickle")]
    assert main(["caption", str(tmp_path / "bf16"), *embeds, "--precision", "float32"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 100


def test_a_bfloat16_graph_chooses_words_from_float32_top_logits():
    from capstone.fast.decoding import token_logits
    from capstone.layers import Dense

    x = np.random.default_rng(0).normal(size=(50, 120)).astype(np.float32)
    values = {}
    for name in precision.PRECISIONS:
        graph = tf.Graph()
        with graph.as_default():
            v1.set_random_seed(1)
            precision.set_graph_precision(name)
            dense = Dense(8769, name="token_logits")
            refined, rounded = token_logits(dense, tf.constant(x)), dense(tf.constant(x))
            with v1.Session(graph=graph) as session:
                session.run(v1.global_variables_initializer())
                values[name] = [session.run(refined), session.run(rounded)]  # apart: the scatter may reuse its input
    exact = values["float32"][0]
    best = exact.argmax(1)[:, None]                    # float32's word: always among bfloat16's top 4 here
    refined, rounded = values["bfloat16"]
    assert np.allclose(np.take_along_axis(refined, best, 1), np.take_along_axis(exact, best, 1), rtol=0, atol=1e-5)
    assert (refined.argmax(1) == exact.argmax(1)).all()
    # Without the refinement the best logits are bfloat16's: off by more than float32 round-off.
    assert not np.allclose(np.take_along_axis(rounded, best, 1), np.take_along_axis(exact, best, 1), rtol=0, atol=1e-5)
