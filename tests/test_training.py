"""Training learns, resumes where it stopped, and refuses bad input with clear messages."""

import json
import os

import numpy as np
import pytest

from capstone.support import run_dir as runs
from capstone.config import ModelConfig, TrainingConfig
from capstone.errors import CapstoneError
from capstone.final_model import FinalModel, generate_caption
from capstone.training import train
from synthetic import make_problem, scene_captions

SMALL = ModelConfig(img_embed_bottleneck=32, word_embed_size=32, lstm_units=64, logit_bottleneck=32)


def quick_config(**overrides):
    values = dict(batch_size=32, n_epochs=4, n_batches_per_epoch=100, n_validation_batches=5, min_count=1)
    values.update(overrides)
    return TrainingConfig(**values)


@pytest.fixture(scope="module")
def problem():
    return make_problem()


@pytest.fixture(scope="module")
def trained(problem, tmp_path_factory):
    (train_e, train_c, _), (val_e, val_c, _) = problem
    run_path = str(tmp_path_factory.mktemp("run"))
    history = train(run_path, train_e, train_c, val_e, val_c, SMALL, quick_config(), progress=False, log=lambda _: None)
    return run_path, history


def test_training_drives_validation_loss_down_and_writes_a_run_dir(trained, problem):
    run_path, history = trained
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    # 5 phrasings per scene: the floor is the entropy of choosing a phrasing (~0.3 nats/token here)
    assert history[0]["val_loss"] > 1.0
    assert history[-1]["val_loss"] < 0.5
    for name in ("config.json", "vocab.json", "history.json", "loss.png"):
        assert os.path.getsize(os.path.join(run_path, name)) > 0
    with open(os.path.join(run_path, "loss.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert runs.latest_checkpoint(run_path) == os.path.join(run_path, "checkpoints", "epoch-0004", "model")
    assert os.listdir(os.path.join(run_path, "tensorboard"))
    assert json.load(open(os.path.join(run_path, "history.json"))) == history


def test_greedy_captions_reproduce_held_out_scenes(trained, problem):
    run_path, _ = trained
    (_, _, _), (val_e, _, val_scenes) = problem
    model = FinalModel.load(run_path)
    captions = model.captions(embeddings=val_e)
    right = [caption in scene_captions(*scene) for caption, scene in zip(captions, val_scenes)]
    assert np.mean(right) >= 0.95, list(zip(captions, val_scenes))[:10]
    tokens = generate_caption(model, embedding=val_e[0])
    assert tokens[0] == "#START#" and tokens[-1] == "#END#"
    assert " ".join(tokens[1:-1]) == captions[0]
    # beam search finds captions of the right scene, best first, scores sorted
    beams = model.beam_captions(embeddings=val_e[:5], beam_size=3)
    for found, scene in zip(beams, val_scenes[:5]):
        assert len(found) == 3 and [s for _, s in found] == sorted([s for _, s in found], reverse=True)
        assert found[0][0] in scene_captions(*scene)


def test_sampling_with_temperature(trained, problem):
    run_path, _ = trained
    (_, _, _), (val_e, _, val_scenes) = problem
    model = FinalModel.load(run_path)
    rng = np.random.default_rng(0)
    cold = model.captions(embeddings=np.repeat(val_e[:1], 20, axis=0), sample=True, temperature=0.05, rng=rng)
    hot = model.captions(embeddings=np.repeat(val_e[:1], 20, axis=0), sample=True, temperature=3.0, rng=rng)
    assert len(set(cold)) <= 2 and all(c in scene_captions(*val_scenes[0]) for c in cold)
    assert len(set(hot)) > len(set(cold))


def test_resume_continues_from_the_last_epoch_like_an_uninterrupted_run(problem, tmp_path, trained):
    (train_e, train_c, _), (val_e, val_c, _) = problem
    run_path = str(tmp_path / "resumed")
    logs = []
    first = train(run_path, train_e, train_c, val_e, val_c, SMALL, quick_config(n_epochs=2), progress=False,
                  log=logs.append)
    vocab_before = runs.load_run(run_path).vocab
    assert [h["epoch"] for h in first] == [1, 2]
    second = train(run_path, train_e, train_c, val_e, val_c, None, quick_config(n_epochs=4), progress=False,
                   log=logs.append)
    assert any("resuming" in line and "after epoch 2" in line for line in logs)
    assert [h["epoch"] for h in second] == [1, 2, 3, 4]
    assert runs.load_run(run_path).vocab == vocab_before
    # same seeds, same batches, Adam state restored: the same numbers as the uninterrupted run
    uninterrupted = trained[1]
    np.testing.assert_allclose([h["val_loss"] for h in second], [h["val_loss"] for h in uninterrupted], rtol=1e-4)


def test_early_stopping_stops_when_validation_stops_improving(problem, tmp_path):
    (train_e, train_c, _), (val_e, val_c, _) = problem
    history = train(str(tmp_path / "run"), train_e, train_c, val_e, val_c, SMALL,
                    quick_config(n_epochs=30, n_batches_per_epoch=40, patience=1, learning_rate=0.01),
                    progress=False, log=lambda _: None)
    assert len(history) < 30
    best = int(np.argmin([h["val_loss"] for h in history]))
    assert best == len(history) - 2  # stopped one epoch after the best one


def test_bad_training_input_is_a_clear_error(problem, tmp_path):
    (train_e, train_c, _), _ = problem
    with pytest.raises(CapstoneError, match="300 embeddings but 299 caption lists"):
        train(str(tmp_path / "a"), train_e, train_c[:-1], progress=False)
    with pytest.raises(CapstoneError, match="image #1 has no captions"):
        train(str(tmp_path / "b"), train_e[:3], [["a cat"], [], ["a dog"]], progress=False)
    with pytest.raises(CapstoneError, match="only\\s+the special tokens"):
        train(str(tmp_path / "c"), train_e[:2], [["a cat"], ["a dog"]], progress=False)


def test_unreadable_checkpoint_is_a_clear_error(trained, tmp_path):
    run_path, _ = trained
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "vocab.json"):
        (broken / name).write_bytes(open(os.path.join(run_path, name), "rb").read())
    (broken / "checkpoints").mkdir()
    (broken / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "model-1"\n')
    (broken / "checkpoints" / "model-1.index").write_bytes(b"garbage")
    with pytest.raises(CapstoneError, match="checkpoint is unreadable"):
        FinalModel.load(str(broken))
    with pytest.raises(CapstoneError, match="run directory does not exist"):
        FinalModel.load(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CapstoneError, match="config.json: missing"):
        FinalModel.load(str(tmp_path / "empty"))


def test_loss_plot_marks_the_best_epoch_that_best_dir_keeps(tmp_path):
    from capstone.support.loss_plot import history_figure, plot_history
    from capstone.training import best_epoch

    history = [{"epoch": 1, "train_loss": 3.0, "val_loss": 2.5}, {"epoch": 2, "train_loss": 2.0, "val_loss": 1.9},
               {"epoch": 3, "train_loss": 1.5, "val_loss": 2.1}]
    assert best_epoch(history)["epoch"] == 2 and best_epoch([{"epoch": 1, "train_loss": 1.0, "val_loss": None}]) is None
    ax, = history_figure(history).axes
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["train", "validation", "best: epoch 2, val 1.900 (kept in best/)"]
    star = ax.get_lines()[-1]
    assert list(star.get_xdata()) == [2] and list(star.get_ydata()) == [1.9]
    no_val = history_figure([{"epoch": 1, "train_loss": 1.0, "val_loss": None}]).axes[0]
    assert [t.get_text() for t in no_val.get_legend().get_texts()] == ["train"]
    plot_history(history, str(tmp_path / "loss.png"))
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_loss_plot_after_self_critical_training_marks_the_cider_epoch_best_dir_keeps():
    from capstone.support.checkpoints import SELF_CRITICAL
    from capstone.support.loss_plot import history_figure

    def tuned(epoch, cider):
        return {"epoch": epoch, "phase": SELF_CRITICAL, "val_cider": cider, "train_greedy_reward": cider + 0.2,
                "start_val_cider": 0.40}

    history = [{"epoch": 1, "train_loss": 3.0, "val_loss": 2.5}, {"epoch": 2, "train_loss": 2.0, "val_loss": 1.9},
               tuned(3, 0.45), tuned(4, 0.47), tuned(5, 0.44)]
    loss_ax, cider_ax = history_figure(history).axes
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()][-1] == \
        "best: epoch 2, val 1.900 (self-critical training started here)"
    assert [t.get_text() for t in cider_ax.get_legend().get_texts()] == [
        "validation CIDEr (greedy)", "train CIDEr-D (greedy)", "validation CIDEr at start",
        "best: epoch 4, CIDEr 0.470 (kept in best/)"]
    star = cider_ax.get_lines()[-1]
    assert list(star.get_xdata()) == [4] and list(star.get_ydata()) == [0.47]
    assert cider_ax.get_xlabel() == "epoch (self-critical)" and cider_ax.get_ylabel() == "CIDEr-D"
