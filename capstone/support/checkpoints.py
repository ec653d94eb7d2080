"""Checkpoints a kill cannot break: each epoch is one directory that appears by one rename.

    RUN_DIR/checkpoints/epoch-0004/   model.index, model.data-00000-of-00001, record.json
    RUN_DIR/best/epoch-0003/          a copy of the best epoch's directory
    RUN_DIR/best/checkpoint           TensorFlow's pointer file: "epoch-0003/model"

One epoch is saved in this order; each step is atomic, so a kill leaves the run between two steps:

    1. save_epoch     the Saver writes checkpoints/.tmp-epoch-0004-*/, record.json beside the
                      weights, then one rename makes it checkpoints/epoch-0004/: the epoch is done.
    2. install_best   (a better validation loss) copy it to best/.tmp-*/, rename to best/epoch-0004/,
                      then rewrite best/checkpoint atomically: the one switch readers see.
    3. history.json and loss.png are rewritten from the records.
    4. prune          keep the newest KEEP checkpoints on disk; old best copies go.

``recover`` runs when training starts and finishes whatever a kill interrupted: it removes
temporaries, rebuilds the history from history.json plus every checkpoint's record.json, and
installs the best epoch in best/ if step 2 did not happen. Nothing is deleted (step 4) before
history.json holds its record (step 3), so no finished epoch is ever lost. Directories are
deleted by renaming them to ``.trash-*`` first, so a half-deleted one is never taken for a checkpoint.
"""

import contextlib
import glob
import os
import shutil
import tempfile

from capstone.support import run_dir as runs
from capstone.support.atomic import atomic_open, read_json_or_none, remove_stale_temporaries, write_json
from capstone.support.disk import writing

KEEP = 3                # epoch checkpoints kept on disk (best/ holds its own copy)
SELF_CRITICAL = "self_critical"  # the "phase" of a self-critical epoch's record (capstone.self_critical)
_TMP = ".tmp-"          # a directory being written
_TRASH = ".trash-"      # a directory being deleted


def epoch_name(epoch):
    return f"epoch-{epoch:04d}"


def save_epoch(saver, session, run_dir, record, then):
    """Write the session's variables and ``record`` as checkpoints/epoch-NNNN/; returns its prefix.

    ``then`` says what to do after a disk error (the previous checkpoint is untouched).
    """
    directory = os.path.join(run_dir, runs.CHECKPOINTS)
    final = os.path.join(directory, epoch_name(record["epoch"]))
    with writing(final, then):
        os.makedirs(directory, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=_TMP + epoch_name(record["epoch"]) + "-", dir=directory)
        try:
            try:  # write_state=False: no pointer file and no deletions; both are ours to do
                saver.save(session, os.path.join(tmp, runs.MODEL), write_meta_graph=False, write_state=False)
            except ValueError as error:  # the Saver's word for "the folder went away"
                raise OSError(str(error)) from None
            write_json(os.path.join(tmp, runs.RECORD), record)
            _sync_folder(tmp)
            if os.path.exists(final):  # left by an earlier run that was started on different data
                _delete_dir(final)
            os.rename(tmp, final)
            _sync_folder(directory)
        except Exception:  # a kill leaves it to recover(); an error (disk full) cleans up now
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return os.path.join(final, runs.MODEL)


def install_best(run_dir, prefix, record, then):
    """Copy the checkpoint ``prefix`` to best/epoch-NNNN/ and switch best/checkpoint to it."""
    best = os.path.join(run_dir, runs.BEST)
    name = epoch_name(record["epoch"])
    with writing(os.path.join(best, name), then):
        os.makedirs(best, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=_TMP + name + "-", dir=best)
        try:
            for source in glob.glob(glob.escape(prefix) + ".*"):
                suffix = os.path.basename(source)[len(os.path.basename(prefix)):]  # ".index", ".data-…"
                _link_or_copy(source, os.path.join(tmp, runs.MODEL + suffix))
            write_json(os.path.join(tmp, runs.RECORD), record)
            _sync_folder(tmp)
            if os.path.exists(os.path.join(best, name)):
                _delete_dir(os.path.join(best, name))
            os.rename(tmp, os.path.join(best, name))
        except Exception:  # a kill leaves it to recover(); an error (disk full) cleans up now
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        pointed = f"{name}/{runs.MODEL}"
        with atomic_open(os.path.join(best, "checkpoint"), "w") as f:
            f.write(f'model_checkpoint_path: "{pointed}"\nall_model_checkpoint_paths: "{pointed}"\n')
    _prune_best(best, keep=name)


def best_record(run_dir):
    """The record.json of the checkpoint best/ points at; None for none (or an old-layout best/)."""
    best = os.path.join(run_dir, runs.BEST)
    prefix = runs._newest_in(best) if os.path.isdir(best) else None
    return read_json_or_none(os.path.join(os.path.dirname(prefix), runs.RECORD)) if prefix else None


def is_self_critical(record):
    return isinstance(record, dict) and record.get("phase") == SELF_CRITICAL


def best_of(history):
    """The record best/ keeps, or None: the self-critical epoch with the highest validation CIDEr when
    one beats the checkpoint self-critical training started from, else the lowest validation loss
    (the first of equals, as training keeps it)."""
    tuned = [r for r in history if is_self_critical(r) and r.get("val_cider") is not None]
    if tuned:
        top = max(tuned, key=lambda r: r["val_cider"])  # max keeps the first of equals
        if top["val_cider"] > top.get("start_val_cider", float("-inf")):
            return top
    scored = [r for r in history if not is_self_critical(r) and r.get("val_loss") is not None]
    return min(scored, key=lambda r: r["val_loss"]) if scored else None


def recover(run_dir, start_epoch, then):
    """Finish what a kill interrupted; returns the history of epochs 1..start_epoch.

    start_epoch: the epoch of the checkpoint training restored (0 for none).
    The history is history.json's records merged with every checkpoint's record.json; best/
    is made to hold ``best_of`` them when its checkpoint is still on disk.
    """
    with writing(run_dir, then):
        remove_stale_temporaries(run_dir)
        for folder in (runs.CHECKPOINTS, runs.BEST):
            _remove_stale_checkpoint_files(os.path.join(run_dir, folder))
    records = {r["epoch"]: r for r in runs.read_history(run_dir) if isinstance(r, dict) and "epoch" in r}
    checkpoints = dict(runs.epoch_checkpoints(os.path.join(run_dir, runs.CHECKPOINTS)))
    for epoch, prefix in checkpoints.items():
        record = read_json_or_none(os.path.join(os.path.dirname(prefix), runs.RECORD))
        if isinstance(record, dict) and record.get("epoch") == epoch:
            records[epoch] = record
    history = [records[epoch] for epoch in sorted(records) if epoch <= start_epoch]
    best = best_of(history)
    if best is not None:
        installed = best_record(run_dir)
        if (installed is None or installed.get("epoch") != best["epoch"]) and best["epoch"] in checkpoints:
            install_best(run_dir, checkpoints[best["epoch"]], best, then)
    return history


def prune(run_dir, keep=KEEP):
    """Delete all but the newest ``keep`` epoch checkpoints on disk (old layout included)."""
    directory = os.path.join(run_dir, runs.CHECKPOINTS)
    with writing(directory, "run the same command again"):
        for _, prefix in runs.epoch_checkpoints(directory)[:-keep or None]:
            if os.path.basename(prefix) == runs.MODEL:
                _delete_dir(os.path.dirname(prefix))
            else:  # old layout: the index goes first, so a half-deleted one no longer counts
                os.remove(prefix + ".index")
                for path in glob.glob(glob.escape(prefix) + ".*"):
                    os.remove(path)
        _remove_old_pointer(directory)
    best = os.path.join(run_dir, runs.BEST)
    installed = runs._newest_in(best) if os.path.isdir(best) else None
    name = os.path.basename(os.path.dirname(installed)) if installed else ""
    if runs.EPOCH_DIR.match(name):  # a kill may have come after best/checkpoint switched to it
        with writing(best, "run the same command again"):
            _prune_best(best, keep=name)


def _prune_best(best, keep):
    """Only best/<keep>/ stays: other epoch copies and an old-layout best/model.* go."""
    for name in os.listdir(best):
        path = os.path.join(best, name)
        if runs.EPOCH_DIR.match(name) and name != keep:
            _delete_dir(path)
        elif name.startswith(runs.MODEL + "."):
            os.remove(path)


def _remove_old_pointer(directory):
    """An old-layout checkpoints/checkpoint file goes with the last old-layout checkpoint."""
    pointer = os.path.join(directory, "checkpoint")
    if os.path.exists(pointer) and not any(os.path.basename(p) != runs.MODEL
                                           for _, p in runs.epoch_checkpoints(directory)):
        os.remove(pointer)


def _remove_stale_checkpoint_files(directory):
    """Temporaries of saves and deletions a kill interrupted (ours, and TensorFlow's own)."""
    if not os.path.isdir(directory):
        return
    remove_stale_temporaries(directory)
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith((_TMP, _TRASH)) or "_temp" in name:
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
        elif ".tempstate" in name:
            os.remove(path)


def _delete_dir(path):
    """Rename away first: a kill during rmtree must not leave a half checkpoint under its name."""
    trash = tempfile.mkdtemp(prefix=_TRASH, dir=os.path.dirname(path))
    os.rename(path, os.path.join(trash, os.path.basename(path)))
    shutil.rmtree(trash, ignore_errors=True)


def _link_or_copy(source, target):
    """A hard link costs nothing (checkpoint files are never rewritten); copy where links fail."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _sync_folder(path):
    """fsync the files of ``path`` and the folder itself, so a power cut cannot reorder the rename."""
    with contextlib.suppress(OSError):  # not every platform/file system can fsync a folder
        for name in os.listdir(path):
            with open(os.path.join(path, name), "rb") as f:
                os.fsync(f.fileno())
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
