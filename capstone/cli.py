"""The subcommands of ``python -m capstone``: each is (add_arguments, run, help)."""

import dataclasses
import os
import sys

from capstone.config import ModelConfig, TrainingConfig
from capstone.errors import CapstoneError

# Embedding sizes that name their encoder, so the course's InceptionV3 pickles need no flag.
ENCODER_BY_EMBED_SIZE = {2048: "inception_v3", 1280: "efficientnet_lite0"}


def read_embeddings(embeds_fn, fns_fn):
    """The course's pair of pickles -> (float32 [N, D], list of N file names), checked."""
    import numpy as np

    from utils import read_pickle

    embeds, fns = read_pickle(embeds_fn), read_pickle(fns_fn)
    embeds = np.asarray(embeds)
    if embeds.ndim != 2 or not np.issubdtype(embeds.dtype, np.number):
        raise CapstoneError(f"{embeds_fn}: expected a numeric array [images, features], got shape {embeds.shape}")
    if not isinstance(fns, (list, tuple)) or not all(isinstance(fn, str) for fn in fns):
        raise CapstoneError(f"{fns_fn}: expected a list of file names")
    if len(embeds) != len(fns):
        raise CapstoneError(f"{embeds_fn} has {len(embeds)} embeddings but {fns_fn} has {len(fns)} file names; "
                            f"they must come from the same embedding run")
    return embeds.astype(np.float32, copy=False), list(fns)


def _add_overrides(parser, cls, skip=()):
    """One --flag per config field (``n_epochs`` -> ``--n-epochs``), default: the config's value."""
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        parser.add_argument("--" + field.name.replace("_", "-"), type=type(field.default), default=None,
                            help=f"default {field.default}")


def _config_from_args(cls, args):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    return cls(**values)


# -- train ---------------------------------------------------------------------------------------


def add_train_arguments(p):
    p.add_argument("--train-embeds", required=True, help="train_img_embeds.pickle")
    p.add_argument("--train-fns", required=True, help="train_img_fns.pickle")
    p.add_argument("--captions", required=True, action="append",
                   help="captions: COCO .zip (optionally zip:member.json), COCO .json or image,caption .csv; "
                        "repeat for separate train/val files")
    p.add_argument("--val-embeds", help="val_img_embeds.pickle")
    p.add_argument("--val-fns", help="val_img_fns.pickle")
    p.add_argument("--out", required=True, help="run directory (created, or resumed if it exists)")
    p.add_argument("--encoder", default="auto",
                   help="encoder that made the embeddings (auto: by size, 2048 inception_v3, 1280 efficientnet_lite0)")
    p.add_argument("--epochs", dest="n_epochs", type=int, help="default 12")
    p.add_argument("--batches-per-epoch", dest="n_batches_per_epoch", type=int, help="default 1000")
    _add_overrides(p, TrainingConfig, skip=("n_epochs", "n_batches_per_epoch"))
    _add_overrides(p, ModelConfig, skip=("img_embed_size",))
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def load_split(embeds_fn, fns_fn, caption_sources):
    from capstone.captions import captions_for_fns, load_captions

    embeds, fns = read_embeddings(embeds_fn, fns_fn)
    fn_to_captions = {}
    for source in caption_sources:
        fn_to_captions.update(load_captions(source))
    return embeds, captions_for_fns(fns, fn_to_captions, " + ".join(caption_sources))


def run_train(args):
    from capstone import training

    if bool(args.val_embeds) != bool(args.val_fns):
        raise CapstoneError("give both --val-embeds and --val-fns, or neither")
    train_embeds, train_captions = load_split(args.train_embeds, args.train_fns, args.captions)
    val_embeds = val_captions = None
    if args.val_embeds:
        val_embeds, val_captions = load_split(args.val_embeds, args.val_fns, args.captions)
    encoder = ENCODER_BY_EMBED_SIZE.get(train_embeds.shape[1]) if args.encoder == "auto" else args.encoder
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    model_config = None
    if any(getattr(args, name, None) is not None for name in model_fields):
        model_config = _config_from_args(ModelConfig, args)
    history = training.train(
        args.out, train_embeds, train_captions, val_embeds, val_captions,
        model_config=model_config, training_config=_config_from_args(TrainingConfig, args),
        encoder=encoder, progress=not args.quiet, log=lambda text: print(text, file=sys.stderr))
    if history:
        print(f"{args.out}: {len(history)} epochs, last train loss {history[-1]['train_loss']:.3f}"
              + (f", val loss {history[-1]['val_loss']:.3f}" if history[-1]["val_loss"] is not None else ""))


# -- caption -------------------------------------------------------------------------------------


def add_caption_arguments(p):
    p.add_argument("run_dir", help="run directory written by 'train'")
    p.add_argument("images", nargs="*", help="image files to caption (uses the run's encoder)")
    p.add_argument("--embeds", help="precomputed embeddings pickle instead of images")
    p.add_argument("--fns", help="file names pickle that goes with --embeds")
    p.add_argument("--sample", action="store_true", help="sample words instead of taking the most likely")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    p.add_argument("--beam", type=int, default=0, help="beam search with this many beams (0: greedy)")
    p.add_argument("--max-len", type=int, default=20, help="most words per caption (default 20)")
    p.add_argument("--seed", type=int, default=None, help="seed for --sample")
    p.add_argument("--batch-size", type=int, default=64)


def _check_caption_args(args):
    if args.beam < 0 or (args.beam and args.sample):
        raise CapstoneError("--beam must be a positive beam size and cannot be combined with --sample")
    if args.temperature <= 0:
        raise CapstoneError(f"--temperature must be > 0, got {args.temperature}")
    if bool(args.embeds) != bool(args.fns):
        raise CapstoneError("give both --embeds and --fns, or neither")
    if bool(args.embeds) == bool(args.images):
        raise CapstoneError("give image files, or --embeds and --fns")
    for path in args.images:
        if not os.path.isfile(path):
            raise CapstoneError(f"{path}: image file does not exist")


def caption_batches(model, names, inputs, args, kind):
    """Yield (name, caption) for inputs given as images or embeddings, batch by batch."""
    import numpy as np

    rng = np.random.default_rng(args.seed)
    for start in range(0, len(names), args.batch_size):
        batch = {kind: inputs[start:start + args.batch_size]}
        if args.beam:
            texts = [found[0][0] for found in model.beam_captions(**batch, beam_size=args.beam, max_len=args.max_len)]
        else:
            texts = model.captions(**batch, t=args.temperature, sample=args.sample, max_len=args.max_len, rng=rng)
        yield from zip(names[start:start + args.batch_size], texts)


def run_caption(args):
    from capstone.final_model import FinalModel

    _check_caption_args(args)
    if args.embeds:
        embeds, fns = read_embeddings(args.embeds, args.fns)
        model = FinalModel.load(args.run_dir)
        pairs = caption_batches(model, fns, embeds, args, "embeddings")
    else:
        from capstone.images import load_images_for_model

        model = FinalModel.load(args.run_dir, with_encoder=True)
        images = load_images_for_model(args.images, model.encoder.image_size)
        pairs = caption_batches(model, args.images, images, args, "images")
    for name, caption in pairs:
        print(f"{name}\t{caption}", flush=True)


# -- embed ---------------------------------------------------------------------------------------


def add_embed_arguments(p):
    p.add_argument("source", help="zip file or folder of images")
    p.add_argument("--encoder", default="efficientnet_lite0", help="inception_v3 (course) or efficientnet_lite0 (offline)")
    p.add_argument("--weights", default="imagenet", help="imagenet, a weights file, or an http(s) URL (inception_v3)")
    p.add_argument("--out", required=True, help="PREFIX: writes PREFIX_img_embeds.pickle and PREFIX_img_fns.pickle")
    p.add_argument("--batch-size", type=int, default=32)


def run_embed(args):
    from capstone.embed import embed_images, save_embeddings
    from capstone.encoders import encoder_spec

    encoder_spec(args.encoder)  # an unknown name fails before any work
    if not os.path.exists(args.source):
        raise CapstoneError(f"{args.source}: no such zip file or folder")
    embeds, fns = embed_images(args.source, args.encoder, weights=args.weights, batch_size=args.batch_size)
    for path in save_embeddings(args.out, embeds, fns):
        print(path)
    print(f"{len(fns)} images, {embeds.shape[1]}-d embeddings ({args.encoder})", file=sys.stderr)


# -- split ---------------------------------------------------------------------------------------


def add_split_arguments(p):
    p.add_argument("prefix", help="PREFIX of PREFIX_img_embeds.pickle / PREFIX_img_fns.pickle")
    p.add_argument("--val", type=float, default=0.15, help="fraction (or count, if >= 1) for validation")
    p.add_argument("--test", type=float, default=0.15, help="fraction (or count, if >= 1) for test")
    p.add_argument("--seed", type=int, default=0)


def run_split(args):
    """PREFIX -> PREFIX_train, PREFIX_val, PREFIX_test pickles, a random split by image."""
    import numpy as np

    from capstone.embed import embeddings_paths, save_embeddings

    embeds, fns = read_embeddings(*embeddings_paths(args.prefix))
    n = len(fns)
    sizes = [int(x) if x >= 1 else int(round(x * n)) for x in (args.val, args.test)]
    if min(sizes) < 1 or sum(sizes) >= n:
        raise CapstoneError(f"{args.prefix}: cannot take {sizes[0]} val + {sizes[1]} test images out of {n}")
    order = np.random.default_rng(args.seed).permutation(n)
    parts = {"val": order[:sizes[0]], "test": order[sizes[0]:sum(sizes)], "train": order[sum(sizes):]}
    for name, rows in parts.items():
        rows = np.sort(rows)
        save_embeddings(f"{args.prefix}_{name}", embeds[rows], [fns[i] for i in rows])
        print(f"{args.prefix}_{name}: {len(rows)} images")


# -- evaluate ------------------------------------------------------------------------------------


def add_evaluate_arguments(p):
    p.add_argument("run_dir", help="run directory written by 'train'")
    p.add_argument("--images", help="zip or folder of test images (embedded with the run's encoder)")
    p.add_argument("--embeds", help="or: precomputed test embeddings pickle")
    p.add_argument("--fns", help="file names pickle that goes with --embeds")
    p.add_argument("--captions", required=True, action="append", help="reference captions, as for 'train'")
    p.add_argument("--beam", type=int, default=0, help="beam size (0: greedy)")
    p.add_argument("--max-len", type=int, default=20)
    p.add_argument("--baseline", metavar="TRAIN_PREFIX",
                   help="also score nearest-neighbour retrieval from TRAIN_PREFIX_img_{embeds,fns}.pickle")
    p.add_argument("--out", help="metrics JSON file (default RUN_DIR/metrics_<images>.json)")


def run_evaluate(args):
    import json

    from capstone.atomic import write_json
    from capstone.captions import load_captions
    from capstone.evaluate_run import evaluate_baseline, evaluate_model
    from capstone.evaluation import format_scores
    from capstone.final_model import FinalModel
    from capstone.run_dir import load_run

    if args.beam < 0:
        raise CapstoneError(f"--beam must be a positive beam size (or 0 for greedy), got {args.beam}")
    if bool(args.images) == bool(args.embeds) or bool(args.embeds) != bool(args.fns):
        raise CapstoneError("give --images, or --embeds and --fns")
    fn_to_captions = {}
    for source in args.captions:
        fn_to_captions.update(load_captions(source))
    run = load_run(args.run_dir)
    if args.images:
        from capstone.embed import embed_images

        if not run.encoder:
            raise CapstoneError(f"{args.run_dir}: config.json names no encoder; use --embeds/--fns")
        if not os.path.exists(args.images):
            raise CapstoneError(f"{args.images}: no such zip file or folder")
        embeds, fns = embed_images(args.images, run.encoder)
    else:
        embeds, fns = read_embeddings(args.embeds, args.fns)
    source = " + ".join(args.captions)
    model = FinalModel.load(args.run_dir)
    report = {"model": evaluate_model(model, embeds, fns, fn_to_captions, beam=args.beam, max_len=args.max_len,
                                      source=source)}
    if args.baseline:
        from capstone.captions import captions_for_fns
        from capstone.embed import embeddings_paths

        train_embeds, train_fns = read_embeddings(*embeddings_paths(args.baseline))
        report["nearest_neighbour"] = evaluate_baseline(
            train_embeds, captions_for_fns(train_fns, fn_to_captions, source), embeds, fns, fn_to_captions,
            source=source)
    name = os.path.basename(os.path.normpath(args.images or args.embeds))
    out = args.out or os.path.join(args.run_dir, f"metrics_{name}{'_beam%d' % args.beam if args.beam else ''}.json")
    write_json(out, {key: value for key, value in report.items()})
    for key, value in report.items():
        print(f"{key:18s} {format_scores(value['scores'])}")
    print(json.dumps(report["model"]["scores"]))


# -- demo ----------------------------------------------------------------------------------------


def add_demo_arguments(p):
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="small dataset and short training (about 2 minutes)")


def run_demo(args):
    import json

    from capstone.demo import run_demo as demo

    metrics = demo(args.out, quick=args.quick, log=lambda text: print(text, flush=True))
    print(f"run directory: {args.out}  (examples.png, loss.png, metrics.json; "
          f"caption your own photos: python -m capstone caption {args.out} photo.jpg)")
    print(json.dumps({name: metrics[name] for name in ("greedy", "beam3", "nearest_neighbour")}))


def _serve(args):
    from capstone.serve import run_serve

    return run_serve(args)


def _add_serve(p):
    from capstone.serve import add_serve_arguments

    add_serve_arguments(p)


COMMANDS = {
    "demo": (add_demo_arguments, run_demo, "the whole pipeline offline: data, embeddings, training, metrics"),
    "embed": (add_embed_arguments, run_embed, "images (zip or folder) -> embedding pickles"),
    "split": (add_split_arguments, run_split, "split embedding pickles into train/val/test"),
    "train": (add_train_arguments, run_train, "train the decoder on image embeddings + captions"),
    "caption": (add_caption_arguments, run_caption, "caption images or precomputed embeddings"),
    "evaluate": (add_evaluate_arguments, run_evaluate, "BLEU/METEOR/ROUGE-L/CIDEr of a run on captioned images"),
    "serve": (_add_serve, _serve, "web page + JSON API: caption images, search a folder of images by words"),
}
