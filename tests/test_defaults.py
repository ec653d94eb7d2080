"""`train`'s defaults for real data (issue #15): a held-out validation set when none is given,
the learning-rate schedule, and old run directories keeping the behaviour they were trained with."""

import csv
import json
import os

import numpy as np
import pytest

from capstone.__main__ import main
from capstone.config import BEFORE_FIELD_EXISTED, ModelConfig, TrainingConfig, config_from_dict
from capstone.data.holdout import HOLDOUT_MAX, Rows, hold_out, holdout_size
from capstone.support import run_dir as runs
from capstone.training import _epochs_without_improvement, learning_rate_for, validation_stalls
from synthetic import make_problem
from test_cli import SMALL, write_split


def test_holdout_size_is_a_share_capped_and_none_for_small_sets():
    assert holdout_size(5168) == 258
    assert holdout_size(40_000) == HOLDOUT_MAX
    assert holdout_size(99) == 0
    assert holdout_size(5168, share=0) == 0
    assert holdout_size(200, share=0.1) == 20


def test_hold_out_splits_whole_images_by_seed():
    embeds = np.arange(300 * 4, dtype=np.float32).reshape(300, 4)
    captions = [[f"caption {i} a", f"caption {i} b"] for i in range(300)]
    train_e, train_c, val_e, val_c = hold_out(embeds, captions, 30, seed=3)
    assert train_e.shape == (270, 4) and val_e.shape == (30, 4) and len(train_c) == 270 and len(val_c) == 30
    train_ids, val_ids = train_e[:, 0] / 4, val_e[:, 0] / 4
    assert not set(train_ids) & set(val_ids) and len(set(train_ids) | set(val_ids)) == 300
    # every image keeps all its captions, next to its own embedding
    assert all(caps == [f"caption {int(i)} a", f"caption {int(i)} b"] for i, caps in zip(val_ids, val_c))
    assert np.array_equal(hold_out(embeds, captions, 30, seed=3)[2], val_e)
    assert not np.array_equal(hold_out(embeds, captions, 30, seed=4)[2], val_e)


def test_hold_out_keeps_a_memory_map_on_disk(tmp_path):
    path = tmp_path / "grids.npy"
    grids = np.lib.format.open_memmap(path, "w+", np.float16, (120, 2, 2, 3))
    grids[:] = np.arange(120, dtype=np.float16)[:, None, None, None]
    grids.flush()
    grids = np.load(path, mmap_mode="r")
    train_e, _, val_e, _ = hold_out(grids, [["x"]] * 120, 12, seed=0)
    assert isinstance(train_e, Rows) and isinstance(val_e, Rows)
    assert train_e.shape == (108, 2, 2, 3) and train_e.ndim == 4 and len(val_e) == 12
    batch = train_e[np.array([0, 5, 5])]
    assert batch.shape == (3, 2, 2, 3) and batch[1, 0, 0, 0] == batch[2, 0, 0, 0] == train_e.rows[5]


def test_learning_rate_drops_after_each_epoch_without_a_better_val_loss():
    config = TrainingConfig(learning_rate=0.004, lr_decay=0.5)
    losses = [3.0, 2.9, 2.95, 2.8, 2.85, 2.86]
    rates = [learning_rate_for([{"val_loss": v} for v in losses[:n]], config) for n in range(len(losses) + 1)]
    assert rates == [0.004, 0.004, 0.004, 0.002, 0.002, 0.001, 0.0005]
    assert learning_rate_for([{"val_loss": None}] * 4, config) == 0.004
    assert learning_rate_for([{"val_loss": v} for v in losses], TrainingConfig(lr_decay=1.0)) == 0.001


def test_validation_stalls_count_epochs_with_no_new_best_and_those_in_a_row():
    history = [{"val_loss": v} for v in (3.0, 2.9, 2.95, 2.8, 2.85, 2.86)]
    assert validation_stalls(history) == (3, 2)
    assert validation_stalls(history[:4]) == (1, 0)
    assert validation_stalls(history + [{"val_loss": 2.8}]) == (4, 3)       # equal to the best is a stall
    assert validation_stalls(history + [{"val_loss": None}]) == (3, 2)      # no validation: skipped
    assert validation_stalls([]) == (0, 0)


def test_patience_counts_the_stalls_in_a_row_at_the_end_of_the_history():
    history = [{"val_loss": v} for v in (3.0, 2.9, 2.95, 2.8, 2.85, 2.86)]
    assert _epochs_without_improvement(history) == 2
    assert _epochs_without_improvement(history[:4]) == 0
    assert _epochs_without_improvement(history + [{"val_loss": 2.8}]) == 3    # equal to the best is no better
    # an epoch without validation in the middle is skipped (it used to make np.argmin compare None with floats)
    assert _epochs_without_improvement(history[:3] + [{"val_loss": None}] + history[3:]) == 2
    assert _epochs_without_improvement(history + [{"val_loss": None}]) == 0  # last epoch unvalidated: never stop
    assert _epochs_without_improvement([]) == 0


def test_best_dir_keeps_a_new_best_that_comes_after_a_stall(tmp_path, monkeypatch):
    """Validation losses scripted 2.0, 2.5, 1.5, 1.8: best/ must move to epoch 3, past the stall of epoch 2."""
    import capstone.training

    scripted = iter([2.0, 2.5, 1.5, 1.8])
    monkeypatch.setattr(capstone.training, "mean_loss", lambda *args: next(scripted))
    _, data = _write_data(tmp_path)
    run = str(tmp_path / "run")
    assert main(["train", *data, "--out", run, "--epochs", "4", "--batches-per-epoch", "3", "--batch-size", "8",
                 "--min-count", "1", "--n-validation-batches", "1", "--patience", "3", "--quiet", *SMALL]) == 0
    history = json.load(open(os.path.join(run, "history.json")))
    assert [h["val_loss"] for h in history] == [2.0, 2.5, 1.5, 1.8]
    assert runs.best_checkpoint(run).endswith(os.path.join("epoch-0003", "model"))


def test_an_old_config_without_the_new_fields_keeps_its_old_behaviour():
    old_training = {"batch_size": 16, "n_epochs": 4, "n_batches_per_epoch": 60, "n_validation_batches": 2,
                    "max_len": 20, "learning_rate": 0.01, "min_count": 1, "seed": 7}
    training = config_from_dict(TrainingConfig, old_training, "config.json")
    assert training.patience == 0 and training.lr_decay == 1.0
    assert config_from_dict(ModelConfig, {"lstm_units": 16}, "config.json").dropout == 0.0
    # ...while a new run gets today's defaults, which differ (else the mapping would be pointless)
    new = TrainingConfig()
    assert (new.patience, new.lr_decay, ModelConfig().dropout) != tuple(
        BEFORE_FIELD_EXISTED[k] for k in ("patience", "lr_decay", "dropout"))


def _write_data(tmp_path):
    (train_e, train_c, _), _ = make_problem(n_train=240)
    _, rows = write_split(tmp_path, "train", train_e, train_c)
    with open(tmp_path / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption")] + rows)
    p = str(tmp_path)
    return len(train_e), ["--train-embeds", f"{p}/train_img_embeds.pickle", "--train-fns",
                          f"{p}/train_img_fns.pickle", "--captions", f"{p}/captions.csv"]


def test_train_without_validation_holds_some_images_out_and_says_so(tmp_path, capsys):
    n, data = _write_data(tmp_path)
    run = str(tmp_path / "run")
    assert main(["train", *data, "--out", run, "--epochs", "3", "--batches-per-epoch", "30", "--batch-size", "16",
                 "--min-count", "1", "--n-validation-batches", "2", "--quiet", "--holdout", "0.1", *SMALL]) == 0
    err = capsys.readouterr().err
    assert f"holding out 24 of {n} training images (seed 42)" in err
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["data"]["images"] == n - 24 and config["data"]["held_out"] == 24
    history = json.load(open(os.path.join(run, "history.json")))
    assert all(h["val_loss"] is not None for h in history) and os.path.isdir(os.path.join(run, "best"))
    assert [h["learning_rate"] for h in history] == [
        learning_rate_for(history[:i], TrainingConfig(**config["training"])) for i in range(len(history))]


def test_holdout_zero_trains_on_everything_without_validation(tmp_path, capsys):
    n, data = _write_data(tmp_path)
    run = str(tmp_path / "run")
    assert main(["train", *data, "--out", run, "--epochs", "1", "--batches-per-epoch", "5", "--batch-size", "16",
                 "--min-count", "1", "--quiet", "--holdout", "0", *SMALL]) == 0
    assert "holding out" not in capsys.readouterr().err
    assert json.load(open(os.path.join(run, "config.json")))["data"]["images"] == n
    assert json.load(open(os.path.join(run, "history.json")))[0]["val_loss"] is None


@pytest.mark.parametrize("share", ["1", "-0.1"])
def test_a_holdout_share_outside_0_1_is_refused(tmp_path, capsys, share):
    _, data = _write_data(tmp_path)
    assert main(["train", *data, "--out", str(tmp_path / "run"), "--holdout", share]) == 2
    assert f"--holdout: expected a share of the training images in [0, 1), got {float(share)}" in capsys.readouterr().err


def test_the_same_command_again_resumes_with_the_runs_own_settings(tmp_path):
    """Resuming takes the run's saved settings, not today's defaults; only a flag given changes one."""
    _, data = _write_data(tmp_path)
    run = str(tmp_path / "run")
    common = ["train", *data, "--out", run, "--batches-per-epoch", "5", "--batch-size", "16", "--min-count", "1",
              "--quiet", *SMALL]
    assert main([*common, "--epochs", "1", "--patience", "0", "--lr-decay", "1", "--learning-rate", "0.01"]) == 0
    assert main([*common, "--epochs", "2"]) == 0
    training = json.load(open(os.path.join(run, "config.json")))["training"]
    assert (training["patience"], training["lr_decay"], training["learning_rate"], training["n_epochs"]) == (
        0, 1.0, 0.01, 2)
    assert [h["learning_rate"] for h in json.load(open(os.path.join(run, "history.json")))] == [0.01, 0.01]
