"""Resume is bit-exact with dropout: a run killed anywhere and started again writes the same
history.json, to the last bit, as the run that was never killed.

Dropout masks must therefore depend only on (seed, global step), not on how many times the
graph's random ops ran in this process. Kills are simulated (an exception nothing catches, from
a batch or a save) and one is real: SIGKILL of a child process in the middle of an epoch.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from capstone.config import ModelConfig
from capstone.support import run_dir as runs
from capstone.training import train
from synthetic import make_problem
from test_checkpoints import FileOperations, Killed, tiny_config
from capstone import training

DROPOUT = ModelConfig(img_embed_bottleneck=8, word_embed_size=8, lstm_units=16, logit_bottleneck=8, dropout=0.3)
EPOCHS = 4
BATCHES = 5  # per epoch
PROBLEM = dict(n_train=60, n_val=20, embed_size=8)
# generate_batch also draws the fixed validation batches, once per process, before training
VALIDATION_BATCHES = tiny_config(EPOCHS).n_validation_batches


def _train(run_path, data, model_config=None):
    (train_e, train_c, _), (val_e, val_c, _) = data
    return train(run_path, train_e, train_c, val_e, val_c, model_config, tiny_config(EPOCHS), progress=False,
                 log=lambda _: None)


def _losses(history):
    return [(h["epoch"], h["train_loss"], h["val_loss"]) for h in history]


@pytest.fixture(scope="module")
def data():
    return make_problem(**PROBLEM)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    run_path = str(tmp_path_factory.mktemp("whole") / "run")
    history = _train(run_path, data, DROPOUT)
    assert runs.read_history(run_path) == history
    return history


def _kill_at_batch(monkeypatch, batch):
    """The ``batch``-th training batch this process draws (counting from 1) is never run."""
    drawn = []
    generate_batch = training.generate_batch

    def counted(*args, **kwargs):
        drawn.append(1)
        if len(drawn) == VALIDATION_BATCHES + batch:
            raise Killed(f"killed at batch {batch}")
        return generate_batch(*args, **kwargs)
    monkeypatch.setattr(training, "generate_batch", counted)


# Mid-epoch kills: in epoch 1, 2 (first batch), 3 then 2 again, 4 (last batch).
@pytest.mark.parametrize("kill_batches", [[3], [BATCHES + 1], [2 * BATCHES + 3, 2], [EPOCHS * BATCHES]])
def test_killed_in_an_epoch_and_resumed_is_bit_exact(data, uninterrupted, tmp_path, monkeypatch, kill_batches):
    run_path = str(tmp_path / "run")
    model_config = DROPOUT
    for batch in kill_batches:  # each count starts again with the new process
        with monkeypatch.context() as patch:
            _kill_at_batch(patch, batch)
            with pytest.raises(Killed):
                _train(run_path, data, model_config)
        model_config = None
    assert _losses(_train(run_path, data)) == _losses(uninterrupted)
    assert _losses(runs.read_history(run_path)) == _losses(uninterrupted)


def test_killed_while_saving_and_resumed_is_bit_exact(data, uninterrupted, tmp_path, monkeypatch):
    """Killed in the middle of epoch 2's save: the run goes on from epoch 1."""
    run_path = str(tmp_path / "run")
    with monkeypatch.context() as patch:
        counter = FileOperations(patch, kill_at=None)
        _train(str(tmp_path / "count"), data, DROPOUT)
    second_save = [k for k, name in enumerate(counter.names, 1) if name == "save"][1]
    with monkeypatch.context() as patch:
        FileOperations(patch, kill_at=second_save)
        with pytest.raises(Killed):
            _train(run_path, data, DROPOUT)
    assert [e for e, _ in runs.epoch_checkpoints(os.path.join(run_path, runs.CHECKPOINTS))] == [1]
    assert _losses(_train(run_path, data)) == _losses(uninterrupted)


CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import capstone.training as training
    from synthetic import make_problem
    from test_resume_dropout import DROPOUT, PROBLEM, VALIDATION_BATCHES, _train
    generate_batch, drawn = training.generate_batch, []

    def counted(*args, **kwargs):
        drawn.append(1)
        if len(drawn) == {batch}:
            os.kill(os.getpid(), signal.SIGKILL)
        return generate_batch(*args, **kwargs)

    training.generate_batch = counted
    _train({run_path!r}, make_problem(**PROBLEM), DROPOUT)
""")


def test_sigkill_in_an_epoch_and_resumed_is_bit_exact(data, uninterrupted, tmp_path):
    run_path = str(tmp_path / "run")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # each epoch draws its training batches, then the validation batches (drawn again, the same, every epoch)
    script = CHILD.format(tests=os.path.join(root, "tests"), batch=2 * (BATCHES + VALIDATION_BATCHES) + 2,
                          run_path=run_path)
    child = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert child.returncode == -9, child.stderr[-2000:]
    assert [h["epoch"] for h in runs.read_history(run_path)] == [1, 2]
    assert _losses(_train(run_path, data)) == _losses(uninterrupted)
