"""Training: random batches, Adam, validation after each epoch, checkpoints you can resume.

``train(run_dir, ...)`` is safe to kill at any moment: started again with the same run
directory it restores the last finished epoch (weights, Adam's moments, step counter), keeps
the saved vocabulary and continues with the next epoch. Batches are drawn from a generator
seeded by (seed, epoch), so a resumed run sees the same batches the uninterrupted run would.
How checkpoints, best/ and history.json stay whole and agree: ``capstone.support.checkpoints``.
"""

import dataclasses
import math
import os
import time

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from capstone.support import checkpoints, run_dir as runs
from capstone.support.precision import set_graph_precision
from capstone.support.loss_plot import plot_history
from capstone.support.disk import writing
from capstone.captions import PAD, batch_captions_to_matrix, caption_tokens_to_indices, generate_vocabulary
from capstone.attention import AttentionDecoder
from capstone.config import ModelConfig, TrainingConfig
from capstone.data.holdout import Rows
from capstone.decoder import Decoder
from capstone.encoders.views import TrainingViews
from capstone.fast.label_smoothing import label_smoothing_penalty
from capstone.fast import FastDecoder
from capstone.errors import CapstoneError
from capstone.support.tf_session import make_session

v1 = tf.compat.v1


def generate_batch(decoder, images_embeddings, indexed_captions, batch_size, max_len=None, rng=None, views=None):
    """A feed dict of ``batch_size`` random images with one random caption each.

    images_embeddings [N, IMG_EMBED]; indexed_captions: per image, a list of index lists.
    views: None, or a ``capstone.encoders.views.TrainingViews``: then each image is shown as the
    photo or one of its flipped/cropped views, at random (training only, never validation).
    Returns {decoder.img_embeds: [batch, IMG_EMBED], decoder.sentences: [batch, <= max_len]}.
    """
    rng = rng if rng is not None else np.random.default_rng()
    image_ix = rng.integers(0, len(images_embeddings), batch_size)
    captions = [indexed_captions[i][rng.integers(len(indexed_captions[i]))] for i in image_ix]
    embeds = images_embeddings[image_ix]
    sentences = batch_captions_to_matrix(captions, decoder.pad_idx, max_len=max_len)
    if views is not None:  # drawn after the rest, so that without views the batches are as they always were
        embeds, sentences = views.show(image_ix, embeds, sentences, rng)
    return {decoder.img_embeds: embeds, decoder.sentences: sentences}


def check_embeddings_and_captions(embeds, captions, what):
    """The two inputs of training must line up row by row; say so clearly when they do not.

    embeds: pooled embeddings [images, D], or spatial features [images, G, G, D] (a memory map
    stays one: only the rows of each batch are ever read).
    """
    if not isinstance(embeds, (np.memmap, Rows)):
        embeds = np.asarray(embeds)
    if embeds.ndim not in (2, 4):
        raise CapstoneError(f"{what} embeddings: expected [images, features] or spatial features "
                            f"[images, grid, grid, channels], got shape {embeds.shape}")
    if len(embeds) != len(captions):
        raise CapstoneError(
            f"{what}: {len(embeds)} embeddings but {len(captions)} caption lists; the embeddings and file names "
            f"must come from the same 'embed' run")
    if len(embeds) == 0:
        raise CapstoneError(f"{what}: no images")
    for i, image_captions in enumerate(captions):
        if not image_captions:
            raise CapstoneError(f"{what}: image #{i} has no captions")
    return embeds if embeds.ndim == 4 else embeds.astype(np.float32, copy=False)


def check_decoder_input(model_config, embeds, where):
    """The attention decoder reads a grid of features per image, the course's decoder one vector."""
    wants_grid = model_config.decoder == "attention"
    if wants_grid != (embeds.ndim == 4):
        need = "spatial features [images, grid, grid, channels] ('embed --spatial')" if wants_grid else \
            "pooled embeddings [images, features] (the _img_embeds.pickle)"
        raise CapstoneError(f"{where}: the {model_config.decoder} decoder needs {need}; got shape {embeds.shape}")


@dataclasses.dataclass
class TrainingGraph:
    """The tensors and ops the loop needs, built in their own graph."""
    graph: tf.Graph
    decoder: FastDecoder        # or the course's Decoder (train(fast=False)): the same placeholders and loss
    train_op: tf.Operation
    learning_rate: tf.Tensor    # Adam's step size, fed each epoch (learning_rate_for); the config's rate by default
    epoch: tf.Variable          # epochs finished, saved in the checkpoint so resume knows where it is
    next_epoch: tf.Tensor       # placeholder for the value assigned to epoch
    set_epoch: tf.Operation
    saver: v1.train.Saver       # one checkpoint per epoch, last 3 kept
    init: tf.Operation


def build_training_graph(vocab, model_config, training_config, fast=True):
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(training_config.seed)
        set_graph_precision(training_config.precision)  # bfloat16: the matmuls; variables, Adam and loss stay float32
        if model_config.decoder == "attention":
            decoder = AttentionDecoder(len(vocab), vocab[PAD], model_config)
        else:
            decoder = (FastDecoder if fast else Decoder)(len(vocab), vocab[PAD], model_config)
        global_step = v1.train.get_or_create_global_step()
        learning_rate = v1.placeholder_with_default(np.float32(training_config.learning_rate), [], "learning_rate")
        objective = decoder.loss
        if training_config.label_smoothing:  # validation keeps reporting the plain cross-entropy
            objective += training_config.label_smoothing * label_smoothing_penalty(decoder)
        train_op = v1.train.AdamOptimizer(learning_rate).minimize(objective, global_step=global_step)
        epoch = v1.get_variable("epoch", [], tf.int64, initializer=v1.zeros_initializer(), trainable=False)
        next_epoch = v1.placeholder(tf.int64, [], name="next_epoch")
        return TrainingGraph(
            graph=graph, decoder=decoder, train_op=train_op, learning_rate=learning_rate, epoch=epoch,
            next_epoch=next_epoch, set_epoch=epoch.assign(next_epoch), init=v1.global_variables_initializer(),
            saver=v1.train.Saver(max_to_keep=None),  # keeps nothing itself: capstone.support.checkpoints prunes
        )


def dropout_feed(decoder, model_config, training_config, step):
    """Dropout's rate and seed for one training step: its masks depend on (seed, step) alone,
    so a resumed run draws the same masks as an uninterrupted one."""
    if model_config.dropout <= 0:
        return {}
    return {decoder.dropout_rate: model_config.dropout, decoder.dropout_seed: [training_config.seed, step]}


class FixedBatches:
    """Validation batches from a fixed seed, so every epoch is scored on the same data.

    Drawn again (the same ones) each time they are iterated, not kept: a batch of spatial
    features is megabytes, and a hundred of them would not fit beside the model.
    """

    def __init__(self, decoder, embeds, indexed_captions, training_config, n_batches):
        self.args = (decoder, embeds, indexed_captions, training_config.batch_size, training_config.max_len)
        self.seed, self.n_batches = training_config.seed, n_batches

    def __len__(self):
        return self.n_batches

    def __iter__(self):
        rng = np.random.default_rng([self.seed, 999_999])
        return (generate_batch(*self.args, rng) for _ in range(self.n_batches))


def learning_rate_for(history, config):
    """Adam's step size for the next epoch: the configured rate, times ``lr_decay`` for each epoch so far
    whose validation loss was no new best. A function of the history alone, so a resumed run continues
    the schedule exactly; without validation data the rate stays constant."""
    return config.learning_rate * config.lr_decay ** validation_stalls(history)[0]


def validation_stalls(history):
    """(epochs, in a row at the end) in ``history`` whose validation loss was no new best (equal is no
    better); epochs without a validation loss are skipped. ``self_critical_stalls`` is its CIDEr twin."""
    best, stalls, in_a_row = math.inf, 0, 0
    for val_loss in (record.get("val_loss") for record in history):
        if val_loss is not None:
            stalled = val_loss >= best
            stalls, in_a_row, best = stalls + stalled, (in_a_row + 1 if stalled else 0), min(best, val_loss)
    return stalls, in_a_row


def token_loss(decoder):
    """The cross-entropy per token, what training reports and validation compares: ``loss`` itself,
    except for the attention decoder, which minimises it plus its attention penalty."""
    return getattr(decoder, "cross_entropy", decoder.loss)


def mean_loss(session, decoder, feeds):
    """The mean cross-entropy per token over ``feeds``."""
    return float(np.mean([session.run(token_loss(decoder), feed) for feed in feeds]))


def prepare_run(run_dir, train_captions, model_config, training_config, encoder):
    """A new run writes its vocabulary and config; an existing one is reloaded as it was saved."""
    if runs.is_run_dir(run_dir):
        run = runs.load_run(run_dir)
        if model_config is not None and dataclasses.asdict(model_config) != dataclasses.asdict(run.model_config):
            raise CapstoneError(
                f"{run_dir}: already holds a model with {dataclasses.asdict(run.model_config)}; to train a "
                f"different one choose a new run directory")
        if training_config is not None:
            run.training_config = training_config  # e.g. more epochs for a finished run
        runs.save_run(run)
        return run
    training_config = training_config or TrainingConfig()
    vocab = generate_vocabulary(train_captions, min_count=training_config.min_count)
    run = runs.Run(run_dir, vocab, model_config or ModelConfig(), training_config, encoder)
    runs.save_run(run)
    return run


def best_epoch(history):
    """The record of the epoch with the lowest validation loss (the one ``best/`` keeps; after
    self-critical epochs, the highest validation CIDEr: ``checkpoints.best_of``), or None
    when no epoch has one. best_epoch([{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 1.5}])["epoch"] -> 2"""
    return checkpoints.best_of(history)


def _scalar_summary(values):
    return v1.Summary(value=[v1.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])


def train(run_dir, train_embeds, train_captions, val_embeds=None, val_captions=None, model_config=None,
          training_config=None, encoder=None, progress=True, log=print, fast=True, train_views=None, view_names=()):
    """Train (or resume training) the decoder; returns the run's history, one dict per epoch.

    train_embeds [N, IMG_EMBED] with train_captions: for each row, a list of caption strings.
    val_*: the same for validation (optional; without it there is no early stopping).
    train_views: optional [N, V, IMG_EMBED] extra views of each training image (``embed --augment``),
    named by view_names; batches then show a random one of photo + views per image.
    """
    train_embeds = check_embeddings_and_captions(train_embeds, train_captions, "training data")
    if train_views is not None and train_views.shape != (len(train_embeds), len(view_names)) + train_embeds.shape[1:]:
        raise CapstoneError(f"training views have shape {train_views.shape}, expected "
                            f"{(len(train_embeds), len(view_names)) + train_embeds.shape[1:]} for the training images")
    has_val = val_embeds is not None
    if has_val:
        val_embeds = check_embeddings_and_captions(val_embeds, val_captions, "validation data")
    if model_config is not None:
        model_config = dataclasses.replace(model_config, img_embed_size=train_embeds.shape[-1])
    elif not runs.is_run_dir(run_dir):
        model_config = ModelConfig(img_embed_size=train_embeds.shape[-1])
    run = prepare_run(run_dir, train_captions, model_config, training_config, encoder)
    model_config, config = run.model_config, run.training_config
    if any(map(checkpoints.is_self_critical, runs.read_history(run_dir))):
        log(f"{run_dir}: self-critical training has begun, so cross-entropy training is over")
        return runs.read_history(run_dir)
    check_decoder_input(model_config, train_embeds, "training data")
    if model_config.img_embed_size != train_embeds.shape[-1]:
        raise CapstoneError(f"{run_dir}: model expects {model_config.img_embed_size}-d embeddings, "
                            f"got {train_embeds.shape[-1]}-d ones")
    if has_val and val_embeds.shape[1:] != train_embeds.shape[1:]:
        raise CapstoneError(f"validation embeddings have shape {val_embeds.shape[1:]} per image but training ones "
                            f"{train_embeds.shape[1:]}: use the same encoder for both")

    train_indexed = caption_tokens_to_indices(train_captions, run.vocab)
    views = None if train_views is None else TrainingViews(train_views, view_names, run.vocab)
    g = build_training_graph(run.vocab, model_config, config, fast=fast)
    session = make_session(g.graph)
    checkpoint = runs.latest_checkpoint(run_dir)
    if checkpoint:
        runs.restore(g.saver, session, checkpoint)
    else:
        session.run(g.init)
    start_epoch = int(session.run(g.epoch))
    # A kill may have come between any two steps of the last save: finish them first.
    then = _then(start_epoch)
    on_disk = runs.read_history(run_dir)
    history = checkpoints.recover(run_dir, start_epoch, then)
    recovered = [record for record in history if record not in on_disk]
    if history != on_disk:
        _publish_history(run_dir, history, then)
    checkpoints.prune(run_dir)
    if start_epoch:
        log(f"resuming {run_dir} after epoch {start_epoch} ({checkpoint})")

    val_feeds = []
    if has_val:
        val_indexed = caption_tokens_to_indices(val_captions, run.vocab)
        val_feeds = FixedBatches(g.decoder, val_embeds, val_indexed, config, config.n_validation_batches)
    # The v1 Saver and FileWriter refuse to work in eager mode, so the loop runs inside the graph.
    with g.graph.as_default():
        return _train_epochs(run_dir, g, session, model_config, config, train_embeds, train_indexed,
                             val_feeds, history, start_epoch, progress, log, recovered, views)


def _then(epochs_done):
    """What to do after a disk error: the run is intact up to its last finished epoch."""
    return (f"run the same command again to continue after epoch {epochs_done}" if epochs_done
            else "run the same command again")


def _publish_history(run_dir, history, then):
    """history.json and loss.png, rewritten from the epoch records."""
    runs.write_history(run_dir, history, then)
    path = os.path.join(run_dir, "loss.png")
    with writing(path, then):
        if history:
            plot_history(history, path)


def _write_summaries(run_dir, writer, records, then):
    with writing(os.path.join(run_dir, "tensorboard"), then):
        for record in records:
            values = {k: record[k] for k in ("train_loss", "val_loss") if record.get(k) is not None}
            writer.add_summary(_scalar_summary(values), record["epoch"])
        writer.flush()


def _train_epochs(run_dir, g, session, model_config, config, train_embeds, train_indexed, val_feeds, history,
                  start_epoch, progress, log, recovered=(), views=None):
    """The epoch loop of ``train``; runs with ``g.graph`` as the default graph.

    recovered: records that a kill kept out of history.json (and so out of TensorBoard);
    views: the training images' extra views (TrainingViews) or None.
    """
    has_val = bool(val_feeds)
    with writing(os.path.join(run_dir, "tensorboard"), _then(start_epoch)):
        writer = v1.summary.FileWriter(os.path.join(run_dir, "tensorboard"), graph=None if start_epoch else g.graph)
    _write_summaries(run_dir, writer, recovered, _then(start_epoch))

    reported_loss = token_loss(g.decoder)
    for epoch in range(start_epoch, config.n_epochs):
        if config.patience and _epochs_without_improvement(history) >= config.patience:
            log(f"early stopping: no better validation loss in {config.patience} epochs")
            break
        rng = np.random.default_rng([config.seed, epoch])
        rate = learning_rate_for(history, config)
        started, losses = time.time(), []
        bar = tqdm(range(config.n_batches_per_epoch), desc=f"epoch {epoch + 1}/{config.n_epochs}",
                   disable=not progress, leave=False, mininterval=1.0)
        for batch in bar:
            feed = generate_batch(g.decoder, train_embeds, train_indexed, config.batch_size, config.max_len, rng, views)
            feed.update(dropout_feed(g.decoder, model_config, config, epoch * config.n_batches_per_epoch + batch))
            feed[g.learning_rate] = rate
            _, loss = session.run([g.train_op, reported_loss], feed)
            losses.append(float(loss))
            bar.set_postfix(loss=f"{np.mean(losses[-100:]):.3f}", refresh=False)  # redrawn at mininterval
        bar.close()
        seconds = time.time() - started
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                  "val_loss": mean_loss(session, g.decoder, val_feeds) if has_val else None,
                  "seconds": round(seconds, 2), "batches": len(losses), "learning_rate": rate}

        # The checkpoint directory (with this record inside) first: from then on the epoch is done,
        # and best/, history.json, loss.png follow from it, again after a kill (checkpoints.recover).
        session.run(g.set_epoch, {g.next_epoch: epoch + 1})
        then = _then(epoch)
        prefix = checkpoints.save_epoch(g.saver, session, run_dir, record, then)
        then = _then(epoch + 1)
        if has_val and validation_stalls(history + [record])[1] == 0:  # a new best validation loss
            checkpoints.install_best(run_dir, prefix, record, then)
        history.append(record)
        _publish_history(run_dir, history, then)
        _write_summaries(run_dir, writer, [record], then)
        checkpoints.prune(run_dir)
        val_text = f", val loss {record['val_loss']:.3f}" if has_val else ""
        log(f"epoch {epoch + 1}/{config.n_epochs}: train loss {record['train_loss']:.3f}{val_text} "
            f"({seconds:.1f} s, {100 * seconds / max(len(losses), 1):.2f} s/100 batches)")
    writer.close()
    session.close()
    return history


def _epochs_without_improvement(history):
    """Epochs in a row, at the end of ``history``, with no new best validation loss (what ``patience``
    counts); 0 when the last epoch had no validation loss (a run without validation never stops early)."""
    if not history or history[-1].get("val_loss") is None:
        return 0
    return validation_stalls(history)[1]
