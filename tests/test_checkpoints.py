"""A kill at any file operation of a save loses nothing; run directories stay whole and agree.

The kill is simulated: every file operation of the save path (os.rename/replace/link/remove,
tempfile, shutil, fsync, the TensorFlow Saver) is counted, and the k-th one raises an exception
no code catches, for every k. Then the run directory is checked as ``caption``/``serve`` would
read it, and ``train`` is started again to see that it finishes with what an unkilled run has.
"""

import os
import shutil
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from capstone.config import ModelConfig, TrainingConfig
from capstone.final_model import FinalModel
from capstone.support import checkpoints, run_dir as runs
from capstone.training import train
from synthetic import make_problem

TINY = ModelConfig(img_embed_bottleneck=8, word_embed_size=8, lstm_units=16, logit_bottleneck=8)
FIXTURE_V1 = os.path.join(os.path.dirname(__file__), "fixtures", "run_v1")


def tiny_config(n_epochs, **overrides):
    values = dict(batch_size=8, n_epochs=n_epochs, n_batches_per_epoch=5, n_validation_batches=2, min_count=1,
                  learning_rate=0.01)
    values.update(overrides)
    return TrainingConfig(**values)


class Killed(BaseException):
    """Like SIGKILL for the code under test: no ``except Exception`` sees it."""


class FileOperations:
    """Counts the file operations of the save path; ``kill_at=k`` raises Killed instead of the k-th."""

    def __init__(self, monkeypatch, kill_at=None):
        self.count, self.kill_at, self.names = 0, kill_at, []
        targets = [(os, "rename"), (os, "replace"), (os, "link"), (os, "remove"), (os, "unlink"), (os, "rmdir"),
                   (os, "mkdir"), (os, "fsync"), (os, "chmod"), (tempfile, "mkstemp"), (shutil, "copyfile"),
                   (shutil, "rmtree"), (tf.compat.v1.train.Saver, "save")]
        for owner, name in targets:
            monkeypatch.setattr(owner, name, self._counted(getattr(owner, name), name))

    def _counted(self, operation, name):
        def counted(*args, **kwargs):
            self.count += 1
            self.names.append(name)
            if self.count == self.kill_at:
                raise Killed(f"killed before {name} #{self.count}")
            return operation(*args, **kwargs)
        return counted


def _train(run_path, data, n_epochs, model_config=None):
    (train_e, train_c, _), (val_e, val_c, _) = data
    return train(run_path, train_e, train_c, val_e, val_c, model_config, tiny_config(n_epochs), progress=False,
                 log=lambda _: None)


def _losses(history):
    return [(h["epoch"], h["train_loss"], h["val_loss"], h["batches"]) for h in history]


def _tensors(prefix):
    """Every variable of a checkpoint: reading them all proves the checkpoint is whole."""
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _leftovers(run_path):
    """Files and folders that are neither run files nor complete checkpoints."""
    found = []
    for root, dirs, files in os.walk(run_path):
        for name in dirs + files:
            if name.startswith(".") or "tempstate" in name or "_temp" in name:
                found.append(os.path.join(root, name))
    return found


@pytest.fixture(scope="module")
def data():
    return make_problem(n_train=60, n_val=20, embed_size=8)


@pytest.fixture(scope="module")
def three_epochs(data, tmp_path_factory):
    """A run after 3 epochs, and what an unkilled 4th epoch makes of it."""
    snapshot = str(tmp_path_factory.mktemp("snapshot") / "run")
    _train(snapshot, data, 3, TINY)
    reference = str(tmp_path_factory.mktemp("reference") / "run")
    shutil.copytree(snapshot, reference)
    history = _train(reference, data, 4)
    return snapshot, reference, history


def test_the_fourth_epoch_is_the_best_and_pushes_the_first_out(three_epochs):
    _, reference, history = three_epochs
    # what the kill test below relies on: epoch 4 switches best/ and prunes epoch 1
    assert int(np.argmin([h["val_loss"] for h in history])) == 3
    assert [e for e, _ in runs.epoch_checkpoints(os.path.join(reference, runs.CHECKPOINTS))] == [2, 3, 4]
    assert runs.best_checkpoint(reference) == os.path.join(reference, "best", "epoch-0004", "model")
    assert sorted(os.listdir(os.path.join(reference, "best"))) == ["checkpoint", "epoch-0004"]
    assert checkpoints.best_record(reference) == history[3]
    assert runs.read_history(reference) == history and not _leftovers(reference)


@pytest.fixture(scope="module")
def operations(three_epochs, data, tmp_path_factory):
    """The file operations of resuming the 3-epoch run for a 4th epoch, in order."""
    snapshot = three_epochs[0]
    run_path = shutil.copytree(snapshot, str(tmp_path_factory.mktemp("count") / "run"))
    with pytest.MonkeyPatch.context() as patch:
        counter = FileOperations(patch)
        _train(run_path, data, 4)
    return counter.names


def _kill_then_resume(kill_at, three_epochs, data, run_path, monkeypatch):
    snapshot, reference, expected = three_epochs
    shutil.copytree(snapshot, run_path)
    with monkeypatch.context() as patch:
        killer = FileOperations(patch, kill_at=kill_at)
        with pytest.raises(Killed):
            _train(run_path, data, 4)
    where = f"killed before {killer.names[-1]} #{kill_at}"
    # what caption/serve read right after the kill: whole checkpoints of finished epochs
    assert _tensors(runs.best_checkpoint(run_path)), where
    assert _tensors(runs.latest_checkpoint(run_path)), where
    # started again, the run finishes as if nothing happened
    history = _train(run_path, data, 4)
    assert _losses(history) == _losses(expected), where
    assert runs.read_history(run_path) == history, where
    assert checkpoints.best_record(run_path)["epoch"] == 4, where
    best, expected_best = _tensors(runs.best_checkpoint(run_path)), _tensors(runs.best_checkpoint(reference))
    assert best.keys() == expected_best.keys(), where
    assert all(np.array_equal(best[name], expected_best[name]) for name in best), where
    assert [e for e, _ in runs.epoch_checkpoints(os.path.join(run_path, runs.CHECKPOINTS))] == [2, 3, 4], where
    assert sorted(os.listdir(os.path.join(run_path, "best"))) == ["checkpoint", "epoch-0004"], where
    assert not _leftovers(run_path), where
    assert os.path.exists(os.path.join(run_path, "loss.png")), where


# The operations that switch something in: a kill just before each, and so just after the one before.
SWITCHES = ("save", "rename", "replace", "link", "rmtree")


@pytest.mark.slow  # ~30 s on 2 cores; the default run stays near 10 minutes
def test_a_kill_before_each_switching_file_operation_loses_nothing(three_epochs, data, operations, tmp_path,
                                                                   monkeypatch):
    assert len(operations) >= 40 and set(SWITCHES) <= set(operations), operations
    kill_points = [k for k, name in enumerate(operations, 1) if name in SWITCHES] + [len(operations)]
    for kill_at in kill_points:
        _kill_then_resume(kill_at, three_epochs, data, str(tmp_path / f"kill{kill_at}"), monkeypatch)


@pytest.mark.slow
def test_a_kill_at_any_file_operation_loses_nothing(three_epochs, data, operations, tmp_path, monkeypatch):
    for kill_at in range(1, len(operations) + 1):
        _kill_then_resume(kill_at, three_epochs, data, str(tmp_path / f"kill{kill_at}"), monkeypatch)


def test_a_kill_between_checkpoint_and_history_is_repaired_on_the_next_start(three_epochs, data, tmp_path):
    """The defect of the fault-injection pass: epoch 4 saved, its history record and best/ not yet."""
    snapshot, _, expected = three_epochs
    run_path = shutil.copytree(snapshot, str(tmp_path / "run"))
    _train(run_path, data, 4)
    # roll history.json and best/ back to how they were after epoch 3, as a kill would leave them
    shutil.copy(os.path.join(snapshot, runs.HISTORY), os.path.join(run_path, runs.HISTORY))
    shutil.rmtree(os.path.join(run_path, "best"))
    shutil.copytree(os.path.join(snapshot, "best"), os.path.join(run_path, "best"))
    assert checkpoints.best_record(run_path)["epoch"] == 3
    history = _train(run_path, data, 4)
    assert _losses(history) == _losses(expected) and _losses(runs.read_history(run_path)) == _losses(expected)
    assert checkpoints.best_record(run_path)["epoch"] == 4


def test_keep_last_three_counts_what_is_on_disk_and_stale_temporaries_go(data, tmp_path):
    run_path = str(tmp_path / "run")
    _train(run_path, data, 1, TINY)
    stale = [os.path.join(run_path, ".loss.png.ab12cd.tmp"), os.path.join(run_path, ".history.json.x9.tmp"),
             os.path.join(run_path, "checkpoints", "model-7.data-00000-of-00001.tempstate123456"),
             os.path.join(run_path, "checkpoints", ".tmp-epoch-0009-q1", "model.index"),
             os.path.join(run_path, "best", ".trash-z2", "epoch-0001", "model.index"),
             os.path.join(run_path, "best", ".checkpoint.k3.tmp")]
    for path in stale:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"left by a killed save")
    for n_epochs in range(2, 8):  # one epoch per start, as a run killed after every epoch would go
        _train(run_path, data, n_epochs)
        assert not _leftovers(run_path)
        found = [e for e, _ in runs.epoch_checkpoints(os.path.join(run_path, runs.CHECKPOINTS))]
        assert found == list(range(max(1, n_epochs - 2), n_epochs + 1))
    assert os.listdir(os.path.join(run_path, "best")) and len(os.listdir(os.path.join(run_path, "best"))) == 2


def test_old_run_directories_are_read_and_continued(tmp_path):
    run_path = shutil.copytree(FIXTURE_V1, str(tmp_path / "run_v1"))
    # best/checkpoint names /tmp/fx/run_v1/best/model: found by its file name here
    assert runs.best_checkpoint(run_path) == os.path.join(run_path, "best", "model")
    assert runs.latest_checkpoint(run_path) == os.path.join(run_path, "checkpoints", "model-4")
    model = FinalModel.load(run_path)
    assert model.captions(embeddings=np.zeros((1, 16), np.float32))
    model.close()
    history = _train(run_path, make_problem(n_train=60, n_val=20, embed_size=16), 5)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert runs.read_history(run_path)[:4] == runs.read_history(FIXTURE_V1)
    checkpoint_files = sorted(os.listdir(os.path.join(run_path, "checkpoints")))
    # three checkpoints on disk, old ones counted; the old pointer file goes with the last old one
    assert checkpoint_files == ["checkpoint", "epoch-0005", "model-3.data-00000-of-00001", "model-3.index",
                                "model-4.data-00000-of-00001", "model-4.index"]
    assert runs.latest_checkpoint(run_path).endswith(os.path.join("epoch-0005", "model"))
    best_epoch = 1 + int(np.argmin([h["val_loss"] for h in history]))
    # best/ moved to the new layout (epoch 4 was the best of the old run's history)
    assert sorted(os.listdir(os.path.join(run_path, "best"))) == ["checkpoint", f"epoch-{best_epoch:04d}"]
    assert _tensors(runs.best_checkpoint(run_path))
    _train(run_path, make_problem(n_train=60, n_val=20, embed_size=16), 7)
    assert sorted(os.listdir(os.path.join(run_path, "checkpoints"))) == ["epoch-0005", "epoch-0006", "epoch-0007"]
