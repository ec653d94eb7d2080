"""Self-critical training: the reward is pycocoevalcap's CIDEr-D, the loss and its hand-written gradients
are right for both decoders, a few hundred steps raise the greedy CIDEr, a killed run resumes, bad flags."""

import csv
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from pycocoevalcap.cider.cider import Cider

from capstone.__main__ import main
from capstone.attention import AttentionDecoder
from capstone.config import ModelConfig, TrainingConfig
from capstone.decoder import Decoder
from capstone.errors import CapstoneError
from capstone.fast import FastDecoder
from capstone.self_critical import CiderD, check_self_critical_settings, fine_tune
from capstone.self_critical.graph import captions_to_sentences
from capstone.support import run_dir as runs
from capstone.training import best_epoch, train
from spatial_synthetic import make_spatial_problem
from synthetic import make_problem
from test_cli import SMALL as SMALL_FLAGS, write_split

v1 = tf.compat.v1
REFS = [["a dog runs on the grass", "a brown dog running", "the dog is running on green grass"],
        ["two men play football", "men playing soccer on a field", "a football game in the rain"],
        ["a child in a red shirt", "a little boy wearing red", "kid in red shirt smiles at the camera"],
        ["a dog runs", "a dog runs", "dogs"]]


@pytest.mark.parametrize("candidates", [
    ["a dog running on the grass", "a man plays football on a field", "a", "a dog runs"],
    ["the the the the", "two men play football", "", "a dog runs in the grass with a ball and a stick"],
    ["grass dog", "rain rain", "kid in red shirt smiles at the camera", "cat"],   # words no reference has
])
def test_cider_d_equals_pycocoevalcap_cider(candidates):
    expected = Cider().compute_score({i: r for i, r in enumerate(REFS)},
                                     {i: [c] for i, c in enumerate(candidates)})[1]
    got = CiderD(REFS).scores(range(len(REFS)), candidates)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert got.max() > 0.5  # not all zeros: the comparison means something


def test_cider_d_document_frequencies_stay_those_of_its_corpus():
    """A caption's reward does not depend on what else is scored with it (pycocoevalcap's does)."""
    cider = CiderD(REFS)
    alone = cider.scores([0], ["a dog running on the grass"])
    together = cider.scores([0, 0, 1], ["a dog running on the grass", "a dog", "two men"])
    assert alone[0] == together[0]
    assert CiderD(REFS[:2]).score(0, "a dog running on the grass") != pytest.approx(alone[0])  # the corpus counts
    assert cider.score(0, ["a", "dog", "runs"]) == cider.score(0, "A dog runs!")  # words or text


def test_sampled_captions_become_teacher_forced_sentences():
    tokens = np.array([[5, 6, 3, 0], [7, 3, 9, 9], [4, 4, 4, 4]])
    sentences = captions_to_sentences(tokens, np.array([3, 2, 4]), start_idx=2, pad_idx=0)
    assert sentences.tolist() == [[2, 5, 6, 3, 0], [2, 7, 3, 0, 0], [2, 4, 4, 4, 4]]


# -- the weighted loss and its gradients ---------------------------------------------------------------

TINY = ModelConfig(img_embed_size=12, img_embed_bottleneck=8, word_embed_size=6, lstm_units=10, logit_bottleneck=7,
                   attention_units=5)
VOCAB_SIZE, PAD_IDX = 23, 0


def tiny_sentences(lengths, seed):
    rng = np.random.default_rng(seed)
    sentences = np.full((len(lengths), max(lengths)), PAD_IDX, dtype=np.int32)
    for row, length in enumerate(lengths):
        sentences[row, :length] = rng.integers(1, VOCAB_SIZE, length)
    return sentences


def plain_weighted_loss(flat_logits, sentences, weights):
    """The definition, with TensorFlow's own ops and automatic gradients: mean over captions of
    weight * (sum of -log p of its non-PAD targets)."""
    targets = sentences[:, 1:]
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.reshape(targets, [-1]), logits=flat_logits)
    per_caption = tf.reduce_sum(tf.reshape(xent, tf.shape(targets)) * tf.cast(tf.not_equal(targets, PAD_IDX),
                                                                                tf.float32), axis=1)
    return tf.reduce_sum(weights * per_caption) / tf.cast(tf.shape(sentences)[0], tf.float32)


@pytest.mark.parametrize("decoder", ["show_and_tell", "attention"])
def test_weighted_caption_loss_and_its_gradients_equal_a_plain_reference(decoder):
    config = dataclasses.replace(TINY, decoder=decoder)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(3)
        if decoder == "attention":
            fast = AttentionDecoder(VOCAB_SIZE, PAD_IDX, config)
            hidden = fast.flat_hidden_states  # every position, PAD ones too: the plain graph computes all
            flat_logits = fast.layers.token_logits(fast.layers.token_logits_bottleneck(hidden))
            reference_inputs = fast
        else:
            course = Decoder(VOCAB_SIZE, PAD_IDX, config)
            with v1.variable_scope(v1.get_variable_scope(), reuse=True):
                fast = FastDecoder(VOCAB_SIZE, PAD_IDX, config)
            flat_logits, reference_inputs = course.flat_token_logits, course
        reference = plain_weighted_loss(flat_logits, reference_inputs.sentences, fast.caption_weights)
        variables = v1.trainable_variables()
        grads = [[tf.convert_to_tensor(g) for g in tf.gradients(loss, variables)]
                 for loss in (fast.weighted_caption_loss, reference)]
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    shape = [6, 3, 3, 12] if decoder == "attention" else [6, 12]
    sentences = tiny_sentences([7, 2, 5, 7, 1, 4], seed=1)       # a row without targets too
    weights = np.array([0.7, -1.3, 2.0, -0.2, 5.0, 0.0], np.float32)  # negative: a sample worse than greedy
    feed = {fast.img_embeds: np.random.default_rng(0).normal(size=shape).astype(np.float32),
            fast.sentences: sentences, fast.caption_weights: weights}
    if reference_inputs is not fast:
        feed.update({reference_inputs.img_embeds: feed[fast.img_embeds], reference_inputs.sentences: sentences})
    (loss, fast_grads), (expected_loss, expected_grads) = session.run(
        [[fast.weighted_caption_loss, grads[0]], [reference, grads[1]]], feed)
    assert loss == pytest.approx(expected_loss, rel=1e-5) and abs(loss) > 0.1
    for name, got, expected in zip([v.name for v in variables], fast_grads, expected_grads):
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6, err_msg=name)
    assert sum(np.abs(g).sum() > 0 for g in fast_grads) >= len(variables) - 1
    # weights 1 and the same captions: the summed log-likelihood, i.e. cross-entropy * targets / captions
    feed[fast.caption_weights] = np.ones(6, np.float32)
    xent = fast.cross_entropy if decoder == "attention" else fast.loss
    summed, mean = session.run([fast.weighted_caption_loss, xent], feed)
    assert summed == pytest.approx(mean * (sentences[:, 1:] != PAD_IDX).sum() / 6, rel=1e-5)


# -- learning, resuming ---------------------------------------------------------------------------------

SMALL = ModelConfig(img_embed_bottleneck=32, word_embed_size=32, lstm_units=64, logit_bottleneck=32)


def quick(**overrides):
    values = dict(batch_size=32, n_epochs=1, n_batches_per_epoch=30, n_validation_batches=5, min_count=1)
    return TrainingConfig(**{**values, **overrides})


def tuned(training_config):
    return dataclasses.replace(training_config, n_batches_per_epoch=50, self_critical_epochs=3,
                               self_critical_learning_rate=1e-3)


def self_critical_run(path, problem, model_config, config, epochs):
    (train_e, train_c, _), (val_e, val_c, _) = problem
    train(path, train_e, train_c, val_e, val_c, model_config, config, progress=False, log=lambda _: None)
    train(path, train_e, train_c, val_e, val_c, None, dataclasses.replace(tuned(config), self_critical_epochs=epochs),
          progress=False, log=lambda _: None)
    return fine_tune(path, train_e, train_c, val_e, val_c, progress=False, log=lambda _: None)


@pytest.fixture(scope="module")
def problem():
    return make_problem()


@pytest.fixture(scope="module")
def tuned_run(problem, tmp_path_factory):
    """A briefly trained model (30 batches of cross-entropy), then 3 x 50 self-critical steps."""
    path = str(tmp_path_factory.mktemp("scst") / "run")
    return path, self_critical_run(path, problem, SMALL, quick(), epochs=3)


def test_self_critical_steps_raise_the_greedy_cider(tuned_run):
    path, history = tuned_run
    cross_entropy, *self_critical = history
    assert [r.get("phase") for r in self_critical] == ["self_critical"] * 3
    start = self_critical[0]["start_val_cider"]
    assert start < 1.0 and self_critical[-1]["val_cider"] > start + 2.0   # CIDEr 0..10: a wide margin
    assert self_critical[-1]["train_greedy_reward"] > self_critical[0]["train_greedy_reward"] + 1.0
    best = best_epoch(history)
    assert best["val_cider"] == max(r["val_cider"] for r in self_critical)
    assert runs.best_checkpoint(path).endswith(f"epoch-{best['epoch']:04d}/model")  # best/ holds it
    assert json.load(open(os.path.join(path, "config.json")))["training"]["self_critical_epochs"] == 3
    assert json.load(open(os.path.join(path, "config.json")))["training"]["self_critical_baseline"] == "mean"
    assert all(r["images_per_second"] > 0 and 0 <= r["cider_share"] < 1 for r in self_critical)
    assert os.path.getsize(os.path.join(path, "loss.png")) > 0


def test_mean_baseline_compares_each_sample_with_its_images_other_samples():
    from capstone.self_critical.training import mean_of_the_others

    rewards = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])           # two images, three samples each
    assert np.allclose(mean_of_the_others(rewards, 3), [2.5, 2.0, 1.5, 25.0, 20.0, 15.0])
    advantages = (rewards - mean_of_the_others(rewards, 3)).reshape(2, 3)
    assert np.allclose(advantages.sum(axis=1), 0.0)                  # never all pushed down at once


def test_the_papers_greedy_baseline_raises_the_greedy_cider_too(problem, tmp_path):
    path = str(tmp_path / "run")
    config = dataclasses.replace(quick(), self_critical_baseline="greedy")   # the default is "mean"
    cross_entropy, *self_critical = self_critical_run(path, problem, SMALL, config, epochs=3)
    assert self_critical[-1]["val_cider"] > self_critical[0]["start_val_cider"] + 2.0
    assert json.load(open(os.path.join(path, "config.json")))["training"]["self_critical_baseline"] == "greedy"


def test_runs_from_before_the_baseline_choice_keep_the_greedy_one():
    from capstone.config import config_from_dict

    assert config_from_dict(TrainingConfig, {"self_critical_epochs": 3}, "x").self_critical_baseline == "greedy"


def test_the_self_critical_rate_halves_after_each_epoch_without_a_better_validation_cider():
    from capstone.self_critical.training import self_critical_rate_for, self_critical_stalls

    def history(*val_ciders):
        cross_entropy = [{"epoch": 1, "val_loss": 3.0}]
        return cross_entropy + [{"epoch": 2 + i, "phase": "self_critical", "val_cider": v, "start_val_cider": 0.5}
                                for i, v in enumerate(val_ciders)]

    config = TrainingConfig(self_critical_learning_rate=4e-5, lr_decay=0.5)
    assert self_critical_stalls(history()) == (0, 0)
    assert self_critical_stalls(history(0.5)) == (1, 1)            # no better than where it started
    assert self_critical_stalls(history(0.6, 0.55, 0.7, 0.65, 0.7)) == (3, 2)   # equal to the best is a stall
    assert self_critical_rate_for(history(0.6, 0.55, 0.7, 0.65, 0.7), config) == pytest.approx(5e-6)
    assert self_critical_rate_for(history(0.6, 0.7), config) == 4e-5
    assert self_critical_rate_for(history(0.4), dataclasses.replace(config, lr_decay=1.0)) == 4e-5  # old runs


def test_self_critical_training_stops_early_when_validation_cider_stops_rising(problem, tmp_path, monkeypatch):
    from capstone.self_critical import training as self_critical

    scores = iter([0.5, 0.6, 0.55, 0.5, 0.9, 0.9])   # the start, then after each epoch
    monkeypatch.setattr(self_critical.ValidationCider, "score", lambda self: next(scores))
    (train_e, train_c, _), (val_e, val_c, _) = problem
    path = str(tmp_path / "run")
    config = quick(patience=2, n_batches_per_epoch=5)
    train(path, train_e, train_c, val_e, val_c, SMALL, config, progress=False, log=lambda _: None)
    config = dataclasses.replace(config, self_critical_epochs=5, self_critical_learning_rate=1e-4)
    train(path, train_e, train_c, val_e, val_c, None, config, progress=False, log=lambda _: None)  # saves the config
    said = []
    history = fine_tune(path, train_e, train_c, val_e, val_c, progress=False, log=said.append)
    self_critical_records = [r for r in history if r.get("phase") == "self_critical"]
    assert [r["val_cider"] for r in self_critical_records] == [0.6, 0.55, 0.5]   # 2 epochs without a better one
    assert [r["learning_rate"] for r in self_critical_records] == pytest.approx([1e-4, 1e-4, 5e-5])
    assert any("stops early" in line for line in said)
    assert best_epoch(history)["val_cider"] == 0.6 and runs.best_checkpoint(path).endswith("epoch-0002/model")


@pytest.mark.slow
def test_a_killed_self_critical_run_resumes_like_an_uninterrupted_one(tuned_run, problem, tmp_path):
    path, history = tuned_run
    interrupted = str(tmp_path / "run")
    self_critical_run(interrupted, problem, SMALL, quick(), epochs=2)  # as if killed after 2 epochs
    (train_e, train_c, _), (val_e, val_c, _) = problem
    train(interrupted, train_e, train_c, val_e, val_c, None, tuned(quick()), progress=False, log=lambda _: None)
    resumed = fine_tune(interrupted, train_e, train_c, val_e, val_c, progress=False, log=lambda _: None)
    keys = ("epoch", "train_reward", "train_greedy_reward", "val_cider", "start_val_cider")
    assert [[r.get(k) for k in keys] for r in resumed] == [[r.get(k) for k in keys] for r in history]
    # done is done: asked again, nothing more is trained, and cross-entropy training does not start again
    assert fine_tune(interrupted, train_e, train_c, val_e, val_c, progress=False, log=lambda _: None) == resumed
    assert train(interrupted, train_e, train_c, val_e, val_c, None, tuned(quick(n_epochs=5)), progress=False,
                 log=lambda _: None) == resumed


@pytest.mark.slow
def test_self_critical_raises_the_attention_decoders_greedy_cider(tmp_path):
    problem = make_spatial_problem()
    config = ModelConfig(decoder="attention", img_embed_bottleneck=32, word_embed_size=16, lstm_units=48,
                         logit_bottleneck=32, attention_units=32)
    history = self_critical_run(str(tmp_path / "run"), problem, config, quick(n_batches_per_epoch=40), epochs=3)
    start = history[-1]["start_val_cider"]
    assert history[-1]["val_cider"] > start + 1.0


# -- bad settings -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (dict(self_critical_samples=0), "--self-critical-samples must be >= 1"),
    (dict(self_critical_learning_rate=0.0), "--self-critical-learning-rate must be > 0"),
    (dict(self_critical_epochs=-1), "--self-critical-epochs must be >= 0"),
    (dict(self_critical_baseline="average"), "--self-critical-baseline: expected one of greedy, mean, got 'average'"),
    (dict(self_critical_baseline="mean", self_critical_samples=1),
     "--self-critical-baseline mean compares each sample with the image's other samples: --self-critical-samples"),
])
def test_bad_self_critical_settings_are_clear_errors(overrides, message):
    with pytest.raises(CapstoneError, match=message):
        check_self_critical_settings(TrainingConfig(**{"self_critical_epochs": 2, **overrides}), has_val=True)
    if overrides.get("self_critical_epochs", 0) >= 0:
        check_self_critical_settings(TrainingConfig(**{**overrides, "self_critical_epochs": 0}), has_val=False)  # off


def test_the_cli_refuses_self_critical_training_without_validation_data(tmp_path, capsys, problem):
    (train_e, train_c, _), _ = problem
    _, rows = write_split(tmp_path, "train", train_e, train_c)
    with open(tmp_path / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption")] + rows)
    p = str(tmp_path)
    args = ["train", "--train-embeds", f"{p}/train_img_embeds.pickle", "--train-fns", f"{p}/train_img_fns.pickle",
            "--captions", f"{p}/captions.csv", "--out", f"{p}/run", "--self-critical-epochs", "2", "--holdout", "0",
            *SMALL_FLAGS]
    assert main(args) == 2
    assert "--self-critical-epochs needs validation data (--val-embeds/--val-fns, or --holdout > 0)" in \
        capsys.readouterr().err
    assert main(args[:-len(SMALL_FLAGS)] + ["--self-critical-samples", "0", "--val-embeds", "x", "--val-fns", "y"]) == 2
    assert "--self-critical-samples must be >= 1" in capsys.readouterr().err
    assert not os.path.exists(f"{p}/run")  # refused before any training


def test_fine_tune_needs_a_trained_run(tmp_path, problem):
    (train_e, train_c, _), (val_e, val_c, _) = problem
    runs.save_run(runs.Run(str(tmp_path), {"#PAD#": 0}, SMALL, tuned(quick())))
    with pytest.raises(CapstoneError, match="no cross-entropy epoch"):
        fine_tune(str(tmp_path), train_e, train_c, val_e, val_c, progress=False, log=lambda _: None)
    shutil.rmtree(tmp_path)
