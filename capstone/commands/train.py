"""``python -m capstone train``: train the decoder on image embeddings + captions."""

import dataclasses
import os
import sys

from capstone.commands.common import (ENCODER_BY_EMBED_SIZE, add_config_flags, config_from_args,
                                      load_split)
from capstone.config import ModelConfig, TrainingConfig
from capstone.data.caption_files import CAPTION_SOURCES_HELP
from capstone.data.holdout import HOLDOUT_MAX, HOLDOUT_SHARE, Rows, hold_out, holdout_rows, holdout_size
from capstone.data.shapes_dataset import CAPTIONS_ZIP_NAME
from capstone.errors import CapstoneError
from capstone.support import run_dir as runs
from capstone.support import precision
from capstone.support.run_dir import BEST, SHAPES, record_training_data


def add_arguments(p):
    p.add_argument("--train-embeds", required=True, help="train_img_embeds.pickle")
    p.add_argument("--train-fns", required=True, help="train_img_fns.pickle")
    p.add_argument("--captions", required=True, action="append",
                   help=f"captions: {CAPTION_SOURCES_HELP}; repeat for separate train/val files")
    p.add_argument("--val-embeds", help="val_img_embeds.pickle")
    p.add_argument("--val-fns", help="val_img_fns.pickle")
    p.add_argument("--out", required=True, help="run directory (created, or resumed if it exists)")
    p.add_argument("--encoder", default="auto",
                   help="encoder that made the embeddings (auto: the one named by PREFIX_img_meta.json beside --train-fns; "
                        "without that file by size, 2048 inception_v3, 1280 efficientnet_lite0)")
    p.add_argument("--no-views", action="store_true",
                   help="ignore the flipped/cropped views 'embed --augment' wrote beside the training embeddings "
                        "(by default each batch shows, per image, the photo or one of its views at random)")
    p.add_argument("--epochs", dest="n_epochs", type=int, help="default 12")
    p.add_argument("--batches-per-epoch", dest="n_batches_per_epoch", type=int, help="default 1000")
    add_config_flags(p, TrainingConfig, skip=("n_epochs", "n_batches_per_epoch", "precision"))
    precision.add_precision_argument(p)  # recorded in config.json as float32 or bfloat16
    add_config_flags(p, ModelConfig, skip=("img_embed_size",))
    p.add_argument("--holdout", type=float, default=HOLDOUT_SHARE,
                   help=f"without --val-embeds: share of the training images held out for validation, early "
                        f"stopping and the learning-rate schedule (default {HOLDOUT_SHARE}, at most {HOLDOUT_MAX} "
                        f"images; 0: train on all, never stop early)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def embeddings_meta(args, train_embeds):
    """(meta record or None, views [N, V, ...] or None, view names) of the training embeddings.

    The meta file beside --train-fns names the encoder and the views; one beside --val-fns must name
    the same encoder (other features would not fit the model).
    """
    from capstone.encoders.meta import meta_path, prefix_of, read_meta
    from capstone.encoders.views import read_views, views_path

    meta = read_meta(prefix_of(args.train_fns))
    val_meta = read_meta(prefix_of(args.val_fns)) if args.val_fns else None
    if meta and val_meta and meta["encoder"] != val_meta["encoder"]:
        raise CapstoneError(f"{meta_path(prefix_of(args.train_fns))} says {meta['encoder']} but "
                            f"{meta_path(prefix_of(args.val_fns))} says {val_meta['encoder']}: "
                            f"embed both with one encoder")
    if not meta or not meta["views"] or args.no_views:
        return meta, None, ()
    path = views_path(prefix_of(args.train_fns), spatial=train_embeds.ndim == 4)
    views = read_views(path, len(train_embeds), meta["views"], train_embeds.shape[1:])
    print(f"training views: {', '.join(meta['views'])} ({path}); validation uses the photos only", file=sys.stderr)
    return meta, views, tuple(meta["views"])


def run(args):
    from capstone import training
    from capstone.self_critical import check_self_critical_settings, fine_tune

    if bool(args.val_embeds) != bool(args.val_fns):
        raise CapstoneError("give both --val-embeds and --val-fns, or neither")
    resumed = runs.load_run(args.out) if runs.is_run_dir(args.out) else None  # read once, used twice below
    decoder = args.decoder or (resumed.model_config if resumed else ModelConfig()).decoder
    args.precision = precision.resolve(args.precision, path=f"train:{decoder}")
    # Bad self-critical flags fail before any file is read (validation data is checked once it is known).
    check_self_critical_settings(config_from_args(TrainingConfig, args), has_val=True)
    train_embeds, train_captions = load_split(args.train_embeds, args.train_fns, args.captions)
    val_embeds = val_captions = None
    meta, views, view_names = embeddings_meta(args, train_embeds)
    training_config = config_from_args(TrainingConfig, args)
    if resumed:  # resuming: the run's own settings, changed only where a flag says so
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingConfig)
                 if getattr(args, f.name, None) is not None}
        training_config = dataclasses.replace(resumed.training_config, **given)
    held_out = 0
    if args.val_embeds:
        val_embeds, val_captions = load_split(args.val_embeds, args.val_fns, args.captions)
    elif not 0 <= args.holdout < 1:
        raise CapstoneError(f"--holdout: expected a share of the training images in [0, 1), got {args.holdout}")
    else:
        held_out = holdout_size(len(train_embeds), args.holdout)
        if held_out:
            if views is not None:  # the views of the held-out photos are not trained on either
                views = Rows(views, holdout_rows(len(train_embeds), held_out, training_config.seed)[1])
            train_embeds, train_captions, val_embeds, val_captions = hold_out(
                train_embeds, train_captions, held_out, training_config.seed)
            print(f"no validation data given: holding out {held_out} of {held_out + len(train_embeds)} training "
                  f"images (seed {training_config.seed}) to stop early and lower the learning rate; "
                  f"--holdout 0 trains on all of them", file=sys.stderr)
    check_self_critical_settings(training_config, has_val=val_embeds is not None)
    encoder = args.encoder
    if encoder == "auto":
        encoder = meta["encoder"] if meta else ENCODER_BY_EMBED_SIZE.get(train_embeds.shape[1])
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    model_config = None
    if any(getattr(args, name, None) is not None for name in model_fields):
        model_config = config_from_args(ModelConfig, args)
    history = training.train(
        args.out, train_embeds, train_captions, val_embeds, val_captions,
        model_config=model_config, training_config=training_config,
        encoder=encoder, progress=not args.quiet, log=lambda text: print(text, file=sys.stderr),
        train_views=views, view_names=view_names)
    if training_config.self_critical_epochs:
        history = fine_tune(args.out, train_embeds, train_captions, val_embeds, val_captions,
                            progress=not args.quiet, log=lambda text: print(text, file=sys.stderr))
    source = SHAPES if any(CAPTIONS_ZIP_NAME in path for path in args.captions) else "captions"
    record_training_data(args.out, source, [os.path.abspath(path) for path in args.captions],
                         images=len(train_embeds), held_out=held_out, views=view_names)
    if history:
        print(summary_line(args.out, history, training.best_epoch(history)))


def summary_line(out, history, best):
    """The last line of ``train``: epochs, last losses (or CIDEr), the epoch best/ keeps."""
    last = history[-1]
    if last.get("phase") == "self_critical":
        text = f"{out}: {len(history)} epochs, the last self-critical, val CIDEr {last['val_cider']:.3f}"
    else:
        text = f"{out}: {len(history)} epochs, last train loss {last['train_loss']:.3f}" + (
            f", val loss {last['val_loss']:.3f}" if last["val_loss"] is not None else "")
    if best:
        score = (f"val CIDEr {best['val_cider']:.3f}" if best.get("phase") == "self_critical"
                 else f"val loss {best['val_loss']:.3f}")
        text += f"; best epoch {best['epoch']}, {score} (kept in {os.path.join(out, BEST)}/, what 'caption' uses)"
    return text
