"""A run directory holds everything needed to use or continue a trained model.

    RUN_DIR/config.json    model + training hyper-parameters, the image encoder's name, and
                           (optional) "data": what it was trained on, e.g.
                           {"source": "shapes", "captions": ["data/captions_shapes.zip"], "images": 300}
    RUN_DIR/vocab.json     {token: index}
    RUN_DIR/history.json   one record per finished epoch (losses, seconds)
    RUN_DIR/checkpoints/   one directory per epoch, the last few kept: epoch-0004/{model.index,
                           model.data-00000-of-00001, record.json (that epoch's history record)}
    RUN_DIR/best/          a copy of the epoch with the lowest validation loss (best/epoch-0003/)
                           and TensorFlow's ``checkpoint`` pointer file naming it
    RUN_DIR/loss.png       loss curves;  RUN_DIR/tensorboard/  the same as TensorBoard scalars

Every file is written atomically, and a checkpoint directory appears by one rename once it is
complete (``capstone.support.checkpoints``), so whatever a kill leaves, readers find a whole
checkpoint. Older run directories (``checkpoints/model-4.*``, ``best/model.*``) are read too.
"""

import dataclasses
import json
import os
import re

import tensorflow as tf

from capstone.support.atomic import write_json
from capstone.support.disk import writing
from capstone.config import ModelConfig, TrainingConfig, config_from_dict
from capstone.errors import CapstoneError

CONFIG = "config.json"
VOCAB = "vocab.json"
HISTORY = "history.json"
CHECKPOINTS = "checkpoints"
BEST = "best"
MODEL = "model"      # file prefix of a checkpoint inside its epoch directory
RECORD = "record.json"
EPOCH_DIR = re.compile(r"epoch-(\d+)$")      # new layout: checkpoints/epoch-0004/model.*
OLD_CHECKPOINT = re.compile(r"model-(\d+)\.index$")  # old layout: checkpoints/model-4.index


@dataclasses.dataclass
class Run:
    """What a run directory says about its model."""
    path: str
    vocab: dict
    model_config: ModelConfig
    training_config: TrainingConfig
    encoder: str = None  # name of the image encoder whose embeddings the model was trained on
    data: dict = None  # what it was trained on: {"source", "captions", "images"}; None for older runs

    @property
    def inverse_vocab(self):
        return {index: token for token, index in self.vocab.items()}


def save_run(run):
    with writing(run.path):
        os.makedirs(run.path, exist_ok=True)
    with writing(os.path.join(run.path, VOCAB)):
        write_json(os.path.join(run.path, VOCAB), run.vocab)
    with writing(os.path.join(run.path, CONFIG)):
        write_json(os.path.join(run.path, CONFIG), {
            "model": dataclasses.asdict(run.model_config),
            "training": dataclasses.asdict(run.training_config),
            "encoder": run.encoder,
            **({"data": run.data} if run.data is not None else {}),
        })


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CapstoneError(f"{path}: missing; is {os.path.dirname(path)} a run directory made by 'train'?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CapstoneError(f"{path}: not valid JSON ({error})") from None


def is_run_dir(path):
    return os.path.exists(os.path.join(path, CONFIG)) and os.path.exists(os.path.join(path, VOCAB))


def load_run(path):
    """Read config.json and vocab.json of a run directory, with clear errors."""
    if not os.path.isdir(path):
        raise CapstoneError(f"{path}: run directory does not exist")
    config = _read_json(os.path.join(path, CONFIG))
    vocab = _read_json(os.path.join(path, VOCAB))
    where = os.path.join(path, CONFIG)
    if not isinstance(config, dict) or "model" not in config or "training" not in config:
        raise CapstoneError(f"{where}: expected keys 'model' and 'training'")
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise CapstoneError(f"{os.path.join(path, VOCAB)}: expected an object {{token: integer index}}")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise CapstoneError(f"{os.path.join(path, VOCAB)}: indices must be 0..{len(vocab) - 1}, each once")
    data = config.get("data")
    if data is not None and not (isinstance(data, dict) and isinstance(data.get("source", ""), str)):
        raise CapstoneError(f"{where}: 'data' must be an object such as {{\"source\": \"shapes\", \"images\": 300}}")
    return Run(
        path=path,
        vocab=vocab,
        model_config=config_from_dict(ModelConfig, config["model"], where + " 'model'"),
        training_config=config_from_dict(TrainingConfig, config["training"], where + " 'training'"),
        encoder=config.get("encoder"),
        data=data,
    )


# -- what a model was trained on ----------------------------------------------------------------

SHAPES = "shapes"  # data "source" of the demo's synthetic pictures of coloured shapes


def record_training_data(path, source, captions=(), images=None, held_out=None, views=()):
    """Write into RUN_DIR/config.json what the model was trained on.

    source: "shapes" for the demo's synthetic pictures, else a short name of the data (e.g. "captions");
    captions: the caption file(s) it learnt from; images: how many training images; held_out: how many
    of the given training images were kept out for validation (``train`` without validation data);
    views: the extra views of them it also saw ("flip", "crop"; recorded only when there are some).
    """
    run = load_run(path)
    run.data = {"source": source, "captions": [str(c) for c in captions], "images": images}
    if held_out:
        run.data["held_out"] = held_out
    if views:
        run.data["views"] = list(views)
    save_run(run)
    return run


def trained_on_shapes(run):
    """True when the model of ``run`` (a Run, or a run directory's path) learnt from the demo's shapes."""
    run = load_run(run) if isinstance(run, str) else run
    return (run.data or {}).get("source") == SHAPES


def shapes_warning(run):
    """One plain sentence for people about to caption their own photos with a shapes model, or None."""
    run = load_run(run) if isinstance(run, str) else run
    if not trained_on_shapes(run):
        return None
    images = run.data.get("images")
    count = f"{images} " if isinstance(images, int) else ""
    return (f"note: {run.path} was trained on {count}synthetic pictures of coloured shapes (the demo); on other "
            f"images it still describes coloured shapes. For photos, train on captioned photos "
            f"(README: 'Real photos').")


def read_history(path):
    history_path = os.path.join(path, HISTORY)
    return _read_json(history_path) if os.path.exists(history_path) else []


def write_history(path, history, then="run the same command again"):
    with writing(os.path.join(path, HISTORY), then):
        write_json(os.path.join(path, HISTORY), history)


def epoch_checkpoints(directory):
    """[(epoch, checkpoint prefix)] of the complete checkpoints in ``directory``, oldest first.

    An epoch directory only ever appears complete (it is renamed into place); old-layout
    ``model-N`` checkpoints count while their ``.index`` file is there (it is removed first).
    """
    found = []
    names = os.listdir(directory) if os.path.isdir(directory) else []
    for name in names:
        new, old = EPOCH_DIR.match(name), OLD_CHECKPOINT.match(name)
        if new and os.path.exists(os.path.join(directory, name, MODEL + ".index")):
            found.append((int(new.group(1)), os.path.join(directory, name, MODEL)))
        elif old:
            found.append((int(old.group(1)), os.path.join(directory, name[:-len(".index")])))
    return sorted(found)


def _newest_in(directory):
    """The newest checkpoint prefix that TensorFlow's ``checkpoint`` index file names in ``directory``.

    The index may hold absolute paths from the machine that trained (a run copied from a GPU
    notebook to a laptop): a path outside ``directory`` is looked up by its file name in it first.
    """
    state = tf.train.get_checkpoint_state(directory)
    if state is None or not state.model_checkpoint_path:
        return None
    named = state.model_checkpoint_path  # a relative path comes back joined to ``directory``
    here = os.path.join(directory, os.path.basename(named))
    inside = os.path.abspath(named).startswith(os.path.join(os.path.abspath(directory), ""))
    # the copy in this run directory first, even where the machine also has the named one
    for prefix in (named, here) if inside else (here, named):
        if tf.io.gfile.exists(prefix + ".index"):
            return prefix
    return None


def latest_checkpoint(path):
    """Prefix of the newest epoch checkpoint, or None when training has not saved one yet."""
    found = epoch_checkpoints(os.path.join(path, CHECKPOINTS))
    return found[-1][1] if found else _newest_in(os.path.join(path, CHECKPOINTS))


def best_checkpoint(path):
    """The checkpoint to caption with: lowest validation loss if known, else the newest."""
    best = os.path.join(path, BEST)
    copies = epoch_checkpoints(best)
    found = _newest_in(best) or (copies[-1][1] if copies else None) or latest_checkpoint(path)
    if found is None:
        raise CapstoneError(f"{path}: no checkpoint found in {CHECKPOINTS}/ or {BEST}/; train the model first")
    return found


def restore(saver, session, checkpoint):
    """saver.restore with a clear error instead of a TensorFlow traceback."""
    try:
        with session.graph.as_default():  # the v1 Saver only works in graph mode
            saver.restore(session, checkpoint)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, tf.errors.InvalidArgumentError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CapstoneError(
            f"{checkpoint}: checkpoint is unreadable or does not match this model ({first_line[:300]})"
        ) from None


def best_validation_loss(run_dir):
    """The lowest validation loss in RUN_DIR/history.json (that is the checkpoint captioning uses)."""
    load_run(run_dir)  # a clear error when it is not a run directory
    losses = [record.get("val_loss") for record in read_history(run_dir) if isinstance(record, dict)]
    losses = [loss for loss in losses if loss is not None]
    if not losses:
        raise CapstoneError(f"{os.path.join(run_dir, HISTORY)}: no epoch with a validation loss; train "
                            f"with validation data (--val-embeds/--val-fns) for at least one epoch")
    return min(losses)
