"""Self-critical sequence training (Rennie et al. 2017): fine-tune a trained decoder on CIDEr-D.

After cross-entropy training, each step takes a batch of training images, samples K captions per
image and decodes the greedy one (inside the graph), scores them all with CIDEr-D against the
image's references (document frequencies from all training references, ``CiderD``), and
minimises  -(reward - baseline) * log p(sampled caption), averaged over the captions: a sample
better than its baseline gets likelier, a worse one less likely. The baseline (``BASELINES``) is
the mean reward of the image's other samples (default) or, as in the paper, the greedy caption's;
the greedy caption's reward is reported either way.

It continues the run directory: epochs are numbered after the cross-entropy ones, their records
(``"phase": "self_critical"``, train rewards, ``val_cider``: the greedy captions' CIDEr-D on the
validation images) go to history.json, their checkpoints to checkpoints/, and best/ switches to
an epoch whose validation CIDEr beats the best so far, starting with that of the cross-entropy
checkpoint it started from (``start_val_cider``). Killed, the same command continues with the
same batches and draws (both seeded by (seed, epoch)), as cross-entropy training does.

Validation CIDEr steers it as validation loss steers cross-entropy training (``patience``,
``lr_decay``): each epoch without a new best multiplies the rate by ``lr_decay``, and ``patience``
such epochs in a row end it. Without that, a long run undoes its own gains: on Flickr8k at a
constant 5e-5 validation CIDEr rose to 0.516 in 4 epochs and fell to 0.412 by the tenth.
"""

import os
import time

import numpy as np
from tqdm.auto import tqdm

from capstone.captions import END, PAD, START
from capstone.errors import CapstoneError
from capstone.self_critical.cider import CiderD
from capstone.self_critical.graph import build_self_critical_graph, caption_words, captions_to_sentences
from capstone.support import checkpoints, run_dir as runs
from capstone.support.checkpoints import SELF_CRITICAL, is_self_critical
from capstone.support.tf_session import make_session
from capstone.training import _publish_history, _then, check_decoder_input, check_embeddings_and_captions

VAL_BATCH = 100  # validation images captioned per Session.run
# What a sampled caption's reward is compared with. "greedy": the greedy caption's (Rennie et al. 2017). "mean": the
# mean of the same image's other samples (Luo 2020, "A better variant of self-critical sequence training"): the
# advantages of an image's samples then sum to zero, so a batch never pushes every sample down at once. On
# Flickr8k the greedy caption out-scored temperature-1 samples ~0.7 to ~0.27 CIDEr-D, most advantages were
# negative, and training with the greedy baseline collapsed after its first epoch (validation CIDEr 0.456 ->
# 0.468 -> 0.312 -> 0.065); with the mean it rose and stayed (0.487, 0.482, 0.482), so "mean" is the default
# (bench/QUALITY.md). Runs made before the choice existed keep "greedy" (config.BEFORE_FIELD_EXISTED).
BASELINES = ("greedy", "mean")


def check_self_critical_settings(config, has_val):
    """One clear error for settings self-critical training cannot run with (the CLI's flag names)."""
    if config.self_critical_epochs < 0:
        raise CapstoneError(f"--self-critical-epochs must be >= 0, got {config.self_critical_epochs}")
    if not config.self_critical_epochs:
        return
    if config.self_critical_samples < 1:
        raise CapstoneError(f"--self-critical-samples must be >= 1 (captions sampled per image), "
                            f"got {config.self_critical_samples}")
    if config.self_critical_baseline not in BASELINES:
        raise CapstoneError(f"--self-critical-baseline: expected one of {', '.join(BASELINES)}, "
                            f"got {config.self_critical_baseline!r}")
    if config.self_critical_baseline == "mean" and config.self_critical_samples < 2:
        raise CapstoneError(f"--self-critical-baseline mean compares each sample with the image's other samples: "
                            f"--self-critical-samples must be >= 2, got {config.self_critical_samples}")
    if not config.self_critical_learning_rate > 0:
        raise CapstoneError(f"--self-critical-learning-rate must be > 0, got {config.self_critical_learning_rate}")
    if not has_val:
        raise CapstoneError("--self-critical-epochs needs validation data (--val-embeds/--val-fns, or --holdout > 0): the epoch "
                            "kept in best/ is chosen by the validation CIDEr")


def fine_tune(run_dir, train_embeds, train_captions, val_embeds, val_captions, progress=True, log=print):
    """Run the self-critical epochs ``config.json`` asks for after the cross-entropy ones; returns the history."""
    run = runs.load_run(run_dir)
    config = run.training_config
    check_self_critical_settings(config, val_embeds is not None)
    train_embeds = check_embeddings_and_captions(train_embeds, train_captions, "training data")
    val_embeds = check_embeddings_and_captions(val_embeds, val_captions, "validation data")
    check_decoder_input(run.model_config, train_embeds, "training data")
    check_decoder_input(run.model_config, val_embeds, "validation data")
    history = runs.read_history(run_dir)
    first = 1 + max((r["epoch"] for r in history if not is_self_critical(r)), default=0)
    if first == 1:
        raise CapstoneError(f"{run_dir}: no cross-entropy epoch to start self-critical training from; train first")
    last = first - 1 + config.self_critical_epochs
    if sum(map(is_self_critical, history)) >= config.self_critical_epochs:
        return history

    g = build_self_critical_graph(run.vocab, run.model_config, config)
    session = make_session(g.graph)
    latest = runs.latest_checkpoint(run_dir)
    latest_epoch = max((e for e, _ in runs.epoch_checkpoints(os.path.join(run_dir, runs.CHECKPOINTS))), default=0)
    with g.graph.as_default():
        if latest_epoch >= first:  # resume: a self-critical checkpoint holds everything
            runs.restore(g.saver, session, latest)
        else:  # start: the best cross-entropy weights, a fresh Adam
            session.run(g.init)
            runs.restore(g.model_saver, session, runs.best_checkpoint(run_dir))
            session.run(g.set_epoch, {g.next_epoch: first - 1})
    start_epoch = int(session.run(g.epoch))
    history = checkpoints.recover(run_dir, start_epoch, _then(start_epoch))
    _publish_history(run_dir, history, _then(start_epoch))

    reward = CiderD(train_captions)
    val = ValidationCider(g, session, run.vocab, val_embeds, val_captions)
    done = [r for r in history if is_self_critical(r)]
    start_cider = done[0]["start_val_cider"] if done else val.score()
    if not done:
        log(f"self-critical training from {runs.best_checkpoint(run_dir)}: validation CIDEr {start_cider:.3f}")
    inverse_vocab = run.inverse_vocab
    with g.graph.as_default():
        for epoch in range(start_epoch, last):
            if config.patience and self_critical_stalls(history)[1] >= config.patience:
                log(f"self-critical training stops early: no better validation CIDEr in {config.patience} epochs")
                break
            rate = self_critical_rate_for(history, config)
            rng = np.random.default_rng([config.seed, epoch, 1])
            started, rewards, greedy_rewards, cider_seconds = time.time(), [], [], 0.0
            bar = tqdm(range(config.n_batches_per_epoch), desc=f"self-critical epoch {epoch + 1}/{last}",
                       disable=not progress, leave=False, mininterval=1.0)
            for _ in bar:
                images = np.sort(rng.integers(0, len(train_embeds), config.batch_size))  # sorted: memory maps
                seed = rng.integers(0, 2 ** 62, size=2)
                step = self_critical_step(g, session, train_embeds[images], images, seed, reward, run.vocab,
                                          inverse_vocab, baseline=config.self_critical_baseline, rate=rate)
                rewards.append(step["reward"])
                greedy_rewards.append(step["greedy_reward"])
                cider_seconds += step["cider_seconds"]
                bar.set_postfix(reward=f"{np.mean(rewards[-50:]):.3f}", refresh=False)
            bar.close()
            seconds = time.time() - started
            images_seen = len(rewards) * config.batch_size
            record = {"epoch": epoch + 1, "phase": SELF_CRITICAL, "train_reward": float(np.mean(rewards)),
                      "train_greedy_reward": float(np.mean(greedy_rewards)), "val_cider": val.score(),
                      "start_val_cider": start_cider, "seconds": round(seconds, 2), "batches": len(rewards),
                      "images_per_second": round(images_seen / seconds, 2),
                      "cider_share": round(cider_seconds / seconds, 3), "learning_rate": rate}
            session.run(g.set_epoch, {g.next_epoch: epoch + 1})
            prefix = checkpoints.save_epoch(g.saver, session, run_dir, record, _then(epoch))
            then = _then(epoch + 1)
            if self_critical_stalls(history + [record])[1] == 0:  # a new best validation CIDEr
                checkpoints.install_best(run_dir, prefix, record, then)
            history.append(record)
            _publish_history(run_dir, history, then)
            checkpoints.prune(run_dir)
            log(f"self-critical epoch {epoch + 1}/{last}: train reward {record['train_reward']:.3f} (greedy "
                f"{record['train_greedy_reward']:.3f}), val CIDEr {record['val_cider']:.3f} ({seconds:.1f} s, "
                f"{record['images_per_second']:.1f} images/s, CIDEr-D {100 * record['cider_share']:.0f} % of it)")
    session.close()
    return history


def self_critical_stalls(history):
    """(epochs, in a row) of the self-critical epochs in ``history`` whose validation CIDEr was no new best,
    the first compared with the CIDEr of the checkpoint training started from."""
    done = [r for r in history if is_self_critical(r)]
    stalls = in_a_row = 0
    best = done[0]["start_val_cider"] if done else None
    for record in done:
        stalled = record["val_cider"] <= best
        stalls, in_a_row = stalls + stalled, (in_a_row + 1 if stalled else 0)
        best = max(best, record["val_cider"])
    return stalls, in_a_row


def self_critical_rate_for(history, config):
    """Adam's step size for the next self-critical epoch: the configured rate times ``lr_decay`` for each
    epoch so far with no better validation CIDEr. A function of the history alone, so a resumed run
    continues the schedule exactly."""
    return config.self_critical_learning_rate * config.lr_decay ** self_critical_stalls(history)[0]


def self_critical_step(g, session, embeds, images, seed, reward, vocab, inverse_vocab, baseline, rate):
    """One step on a batch: embeds [B, ...] of training images ``images`` (their indices in ``reward``),
    each sample's reward compared with ``baseline`` (``BASELINES``), Adam's step size ``rate``.
    Returns the mean sampled and greedy rewards and the seconds CIDEr-D took."""
    k = g.samples
    (tokens, lengths), (greedy, greedy_lengths) = session.run(
        [g.sampled, g.greedy], {g.decoder.img_embeds: embeds, g.sample_seed: seed})
    started = time.time()
    sampled_rewards = reward.scores(np.repeat(images, k), caption_words(tokens, lengths, inverse_vocab, vocab[END]))
    greedy_rewards = reward.scores(images, caption_words(greedy, greedy_lengths, inverse_vocab, vocab[END]))
    cider_seconds = time.time() - started
    advantage = sampled_rewards - (np.repeat(greedy_rewards, k) if baseline == "greedy" else
                                   mean_of_the_others(sampled_rewards, k))
    session.run(g.train_op, {
        g.learning_rate: rate,
        g.decoder.img_embeds: np.repeat(embeds, k, axis=0),
        g.decoder.sentences: captions_to_sentences(tokens, lengths, vocab[START], vocab[PAD]),
        g.decoder.caption_weights: advantage.astype(np.float32)})
    return {"reward": float(sampled_rewards.mean()), "greedy_reward": float(greedy_rewards.mean()),
            "cider_seconds": cider_seconds}


def mean_of_the_others(rewards, k):
    """rewards [B * K] (K samples per image, an image's together) -> [B * K]: for each sample, the mean
    reward of the image's K - 1 other samples. [1, 2, 3, 10, 20, 30], K = 3 -> [2.5, 2, 1.5, 25, 20, 15]."""
    per_image = rewards.reshape(-1, k)
    return ((per_image.sum(axis=1, keepdims=True) - per_image) / (k - 1)).reshape(-1)


class ValidationCider:
    """The greedy captions' CIDEr-D on the validation images (document frequencies from their references,
    as pycocoevalcap computes it on a test set; words as ``split_sentence`` makes them)."""

    def __init__(self, g, session, vocab, embeds, captions):
        self.g, self.session, self.vocab, self.embeds = g, session, vocab, embeds
        self.inverse_vocab = {i: t for t, i in vocab.items()}
        self.cider = CiderD(captions)

    def captions(self):
        words = []
        for start in range(0, len(self.embeds), VAL_BATCH):
            batch = np.asarray(self.embeds[start:start + VAL_BATCH], dtype=np.float32)
            tokens, lengths = self.session.run(self.g.greedy, {self.g.decoder.img_embeds: batch})
            words += caption_words(tokens, lengths, self.inverse_vocab, self.vocab[END])
        return words

    def score(self):
        return float(self.cider.scores(range(len(self.embeds)), self.captions()).mean())
