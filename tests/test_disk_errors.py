"""Out of disk space or permission denied: one line naming the path and what to do, exit
status 2, and the previous checkpoint intact, so the same command continues afterwards."""

import errno
import os
import resource
import signal

import numpy as np
import pytest
import tensorflow as tf

from capstone import __main__ as cli
from capstone.encoders.embed import save_embeddings
from capstone.errors import CapstoneError
from capstone.support import run_dir as runs
from capstone.support.atomic import write_json
from test_checkpoints import TINY, _leftovers, _losses, _tensors, _train
from synthetic import make_problem


@pytest.fixture(scope="module")
def data():
    return make_problem(n_train=60, n_val=20, embed_size=8)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    return _train(str(tmp_path_factory.mktemp("whole") / "run"), data, 3, TINY)


def _fail_on_second_call(monkeypatch, owner, name, error, when=lambda *args: True):
    """owner.name raises ``error`` the second time it is called with arguments that ``when`` accepts."""
    calls = []
    original = getattr(owner, name)

    def failing(*args, **kwargs):
        if when(*args):
            calls.append(args)
            if len(calls) == 2:
                raise error
        return original(*args, **kwargs)
    monkeypatch.setattr(owner, name, failing)


@pytest.mark.parametrize("error, words", [
    (tf.errors.ResourceExhaustedError(None, None, "model.data-00000-of-00001; No space left on device"),
     "out of disk space"),
    (tf.errors.PermissionDeniedError(None, None, "model.index; Permission denied"), "permission denied"),
])
def test_a_checkpoint_that_cannot_be_written_is_one_line_and_the_last_one_stays(
        data, uninterrupted, tmp_path, monkeypatch, error, words):
    run_path = str(tmp_path / "run")
    with monkeypatch.context() as patch:
        _fail_on_second_call(patch, tf.compat.v1.train.Saver, "save", error)
        with pytest.raises(CapstoneError) as raised:
            _train(run_path, data, 3, TINY)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(os.path.join(run_path, "checkpoints", "epoch-0002") + f": {words}")
    assert message.endswith("then run the same command again to continue after epoch 1")
    assert runs.latest_checkpoint(run_path).endswith(os.path.join("epoch-0001", "model"))
    assert _tensors(runs.best_checkpoint(run_path)) and not _leftovers(run_path)
    # space freed: the same command continues as if nothing had happened
    assert _losses(_train(run_path, data, 3)) == _losses(uninterrupted)


def test_a_history_that_cannot_be_written_loses_no_epoch(data, uninterrupted, tmp_path, monkeypatch):
    run_path = str(tmp_path / "run")
    _train(run_path, data, 1, TINY)
    with monkeypatch.context() as patch:
        _fail_on_second_call(patch, os, "replace", OSError(errno.ENOSPC, "No space left on device"),
                             when=lambda source, target: target.endswith("history.json"))
        with pytest.raises(CapstoneError, match=r"history.json: out of disk space \(No space left on device\); "
                                                r"free some space, then run the same command again to continue "
                                                r"after epoch 3$"):
            _train(run_path, data, 3)
    assert [h["epoch"] for h in runs.read_history(run_path)] == [1, 2]  # history.json is behind ...
    assert runs.latest_checkpoint(run_path).endswith(os.path.join("epoch-0003", "model"))
    assert _losses(_train(run_path, data, 3)) == _losses(uninterrupted)  # ... and caught up
    assert _losses(runs.read_history(run_path)) == _losses(uninterrupted)


def test_a_real_write_failure_inside_tensorflow(data, tmp_path):
    """No monkeypatch: the file size limit makes TensorFlow's own writer fail (EFBIG)."""
    run_path = str(tmp_path / "run")
    _train(run_path, data, 1, TINY)
    limit = 2_000  # bytes: less than a checkpoint's data file, more than any JSON file here
    assert os.path.getsize(runs.latest_checkpoint(run_path) + ".data-00000-of-00001") > limit
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(CapstoneError, match="epoch-0002: out of disk space .*continue after epoch 1$"):
            _train(run_path, data, 2)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert runs.latest_checkpoint(run_path).endswith(os.path.join("epoch-0001", "model"))
    assert [h["epoch"] for h in _train(run_path, data, 2)] == [1, 2]
    assert not _leftovers(run_path)


def test_train_command_says_one_line_and_exits_2(data, tmp_path, monkeypatch, capsys):
    from utils import save_pickle

    (train_e, train_c, _), _ = data
    fns = [f"{i}.jpg" for i in range(len(train_e))]
    save_pickle(train_e, str(tmp_path / "e.pickle"))
    save_pickle(fns, str(tmp_path / "f.pickle"))
    with open(tmp_path / "captions.csv", "w") as f:
        f.write("image,caption\n" + "".join(f"{fn},{c}\n" for fn, cs in zip(fns, train_c) for c in cs))
    monkeypatch.setattr(tf.compat.v1.train.Saver, "save", lambda *a, **k: (_ for _ in ()).throw(
        tf.errors.ResourceExhaustedError(None, None, "No space left on device")))
    status = cli.main(["train", "--train-embeds", str(tmp_path / "e.pickle"), "--train-fns", str(tmp_path / "f.pickle"),
                       "--captions", str(tmp_path / "captions.csv"), "--out", str(tmp_path / "run"), "--epochs", "1",
                       "--batches-per-epoch", "2", "--batch-size", "4", "--min-count", "1", "--lstm-units", "8",
                       "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith(f"error: {tmp_path / 'run' / 'checkpoints' / 'epoch-0001'}: out of disk space")
    assert err[-1].endswith("free some space, then run the same command again")
    assert not any("Traceback" in line for line in err)


def test_embeddings_that_cannot_be_saved_are_one_line_and_leave_no_half_pair(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    prefix = str(tmp_path / "train")
    with pytest.raises(CapstoneError, match=f"^{prefix}_img_embeds.pickle: out of disk space"):
        save_embeddings(prefix, np.zeros((2, 3), np.float32), ["a.jpg", "b.jpg"])
    assert os.listdir(tmp_path) == []


def test_any_command_turns_a_disk_error_into_one_line(tmp_path, monkeypatch, capsys):
    from capstone.commands import demo

    def full(*args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied", str(tmp_path / "runs" / "demo" / "data"))
    monkeypatch.setattr(demo, "run_demo", full)
    assert cli.main(["demo", "--out", str(tmp_path / "runs" / "demo")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'runs' / 'demo' / 'data'}: permission denied "
                                       f"(Permission denied); make it writable or choose another directory, "
                                       f"then run the same command again\n")
    with pytest.raises(CapstoneError, match="metrics.json: out of disk space"):
        with demo.writing(str(tmp_path / "metrics.json")):
            monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
            write_json(str(tmp_path / "metrics.json"), {})
