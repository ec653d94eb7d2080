"""``python -m capstone caption``: caption images or precomputed embeddings with a run."""

import os
import sys

from capstone.encoders.embed import read_embeddings
from capstone.config import (MAX_LEN, add_ensemble_argument, add_length_alpha_argument, add_no_repeat_ngram_argument,
                             ensemble_from, length_alpha_from, no_repeat_ngram_from)
from capstone.errors import CapstoneError
from capstone.support.precision import add_precision_argument, resolve
from capstone.support.run_dir import shapes_warning


def add_arguments(p):
    p.add_argument("run_dir", help="run directory written by 'train'")
    p.add_argument("images", nargs="*", help="image files to caption (uses the run's encoder)")
    p.add_argument("--embeds", help="precomputed embeddings pickle instead of images")
    p.add_argument("--fns", help="file names pickle that goes with --embeds")
    p.add_argument("--sample", action="store_true", help="sample words instead of taking the most likely")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    p.add_argument("--beam", type=int, default=0, help="beam search with this many beams (0: greedy)")
    add_length_alpha_argument(p)
    add_no_repeat_ngram_argument(p)
    add_ensemble_argument(p)
    p.add_argument("--max-len", type=int, default=MAX_LEN, help=f"most words per caption (default {MAX_LEN})")
    p.add_argument("--seed", type=int, default=None, help="seed for --sample")
    p.add_argument("--batch-size", type=int, default=64)
    add_precision_argument(p)
    p.add_argument("--attention-plot", metavar="OUT.png",
                   help="attention runs: draw where each word looked (one image: OUT.png; several: OUT_<name>.png)")


def _check_caption_args(args):
    if args.beam < 0 or (args.beam and args.sample):
        raise CapstoneError("--beam must be a positive beam size and cannot be combined with --sample")
    args.length_alpha, args.no_repeat_ngram = length_alpha_from(args), no_repeat_ngram_from(args)
    args.ensemble = ensemble_from(args)
    if args.temperature <= 0:
        raise CapstoneError(f"--temperature must be > 0, got {args.temperature}")
    if bool(args.embeds) != bool(args.fns):
        raise CapstoneError("give both --embeds and --fns, or neither")
    if bool(args.embeds) == bool(args.images):
        raise CapstoneError("give image files, or --embeds and --fns")
    for path in args.images:
        if not os.path.isfile(path):
            raise CapstoneError(f"{path}: image file does not exist")
    if args.attention_plot and not args.images:
        raise CapstoneError("--attention-plot draws over images: give image files, not --embeds")


def plot_paths(out, names):
    """OUT.png for one image; OUT_<name>.png for each of several."""
    if len(names) == 1:
        return [out]
    stem, ext = os.path.splitext(out)
    return [f"{stem}_{os.path.splitext(os.path.basename(name))[0]}{ext or '.png'}" for name in names]


def save_attention_plots(model, images, names, args):
    from capstone.evaluation.attention_plot import save_attention_plot

    for path, image, name in zip(plot_paths(args.attention_plot, names), images, names):
        maps = model.attention_maps(images=image[None], beam_size=args.beam, max_len=args.max_len,
                                    length_alpha=args.length_alpha, no_repeat_ngram=args.no_repeat_ngram)[0]
        print(save_attention_plot(image, maps, path, title=os.path.basename(name)))


def caption_batches(model, names, inputs, args, kind):
    """Yield (name, caption) for inputs given as images or embeddings, batch by batch."""
    import numpy as np

    rng = np.random.default_rng(args.seed)
    for start in range(0, len(names), args.batch_size):
        batch = {kind: inputs[start:start + args.batch_size]}
        if args.beam:
            texts = [found[0][0] for found in model.beam_captions(**batch, beam_size=args.beam, max_len=args.max_len,
                                                                  length_alpha=args.length_alpha,
                                                                  no_repeat_ngram=args.no_repeat_ngram)]
        else:
            texts = model.captions(**batch, temperature=args.temperature, sample=args.sample, max_len=args.max_len,
                                   rng=rng, no_repeat_ngram=args.no_repeat_ngram)
        yield from zip(names[start:start + args.batch_size], texts)


def run(args):
    from capstone.final_model import FinalModel

    _check_caption_args(args)
    precision = resolve(args.precision, path="caption")
    if args.attention_plot:
        from capstone.support.run_dir import load_run

        decoder = load_run(args.run_dir).model_config.decoder
        if decoder != "attention":
            raise CapstoneError(f"--attention-plot: {args.run_dir} holds a {decoder} decoder, which looks at one "
                                f"pooled vector, not at places; train one with --decoder attention")
    if args.embeds:
        embeds, fns = read_embeddings(args.embeds, args.fns)
        model = FinalModel.load(args.run_dir, precision=precision, ensemble=args.ensemble)
        pairs = caption_batches(model, fns, embeds, args, "embeddings")
    else:
        from capstone.encoders.images import load_images_for_model

        model = FinalModel.load(args.run_dir, with_encoder=True, precision=precision, ensemble=args.ensemble)
        warning = shapes_warning(model.run)  # a shapes model on someone's photos: say so once
        if warning:
            print(warning, file=sys.stderr, flush=True)
        images = load_images_for_model(args.images, model.encoder.image_size)
        pairs = caption_batches(model, args.images, images, args, "images")
    for name, caption in pairs:
        print(f"{name}\t{caption}", flush=True)
    if args.attention_plot:
        save_attention_plots(model, images, args.images, args)
