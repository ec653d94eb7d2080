"""``python -m capstone evaluate``: BLEU/METEOR/ROUGE-L/CIDEr of a run on captioned images."""

import os

import numpy as np

from capstone.encoders.embed import read_embeddings
from capstone.config import (LENGTH_ALPHA, MAX_LEN, NO_REPEAT_NGRAM, add_ensemble_argument, add_length_alpha_argument,
                             add_no_repeat_ngram_argument, ensemble_from, length_alpha_from, no_repeat_ngram_from)
from capstone.errors import CapstoneError
from capstone.support.precision import add_precision_argument, resolve


def add_arguments(p):
    p.add_argument("run_dir", help="run directory written by 'train'")
    p.add_argument("--images", help="zip or folder of test images (embedded with the run's encoder)")
    p.add_argument("--embeds", help="or: precomputed test embeddings pickle")
    p.add_argument("--fns", help="file names pickle that goes with --embeds")
    p.add_argument("--captions", required=True, action="append", help="reference captions, as for 'train'")
    p.add_argument("--beam", type=int, default=0, help="beam size (0: greedy)")
    add_length_alpha_argument(p, "; results are named e.g. beam3_alpha0.5")
    add_no_repeat_ngram_argument(p, "; results are named e.g. beam3_norepeat2")
    p.add_argument("--max-len", type=int, default=MAX_LEN, help=f"most words per caption (default {MAX_LEN})")
    p.add_argument("--baseline", metavar="TRAIN_PREFIX",
                   help="also score nearest-neighbour retrieval from TRAIN_PREFIX_img_{embeds,fns}.pickle")
    add_ensemble_argument(p, "; results are named e.g. beam3_ensemble3")
    add_precision_argument(p)  # recorded in the metrics file
    p.add_argument("--out", help="metrics JSON file (default RUN_DIR/metrics_<split>_<decoder>.json, "
                                 "e.g. metrics_all_test_beam3.json)")


def split_name(path):
    """The split's name from its images or embeddings path:
    runs/flickr/all_test_img_embeds.pickle -> all_test;  data/shapes_test.zip -> shapes_test;  photos/ -> photos"""
    name = os.path.basename(os.path.normpath(path))
    for suffix in ("_img_embeds.pickle", "_img_features.npy", "_img_fns.pickle", ".pickle", ".npy", ".zip"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return name


def embed_for(run, images, precision):
    """The images as the run's decoder reads them: pooled embeddings, or (attention) feature grids."""
    if run.model_config.decoder != "attention":
        from capstone.encoders.embed import embed_images
        return embed_images(images, run.encoder, precision=precision)
    import tempfile

    from capstone.encoders.spatial import embed_spatial, features_path, read_features
    with tempfile.TemporaryDirectory(prefix="capstone-evaluate-") as tmp:
        _, fns = embed_spatial(images, run.encoder, os.path.join(tmp, "images"), precision=precision)
        return np.array(read_features(features_path(os.path.join(tmp, "images")), len(fns))), fns


def check_encoder(run, fns_path):
    """Embeddings whose meta file names another encoder than the run's would be scored as noise: refuse them."""
    from capstone.encoders.meta import meta_path, prefix_of, read_meta

    meta = read_meta(prefix_of(fns_path))
    if meta and run.encoder and meta["encoder"] != run.encoder:
        raise CapstoneError(f"{meta_path(prefix_of(fns_path))}: these embeddings come from {meta['encoder']}, "
                            f"but {run.path} was trained on {run.encoder} embeddings; embed the images with "
                            f"--encoder {run.encoder}")


def decoder_name(beam, length_alpha=LENGTH_ALPHA, no_repeat_ngram=NO_REPEAT_NGRAM, ensemble=1):
    """greedy for beam 0, beam3 for beam 3, beam3_alpha0.5 for a length penalty other than the default,
    then _norepeat2 for a no-repeat n-gram size other than the default and _ensemble3 for 3 decoders
    voting: how rows, files and metrics.json name a decoder."""
    name = ("greedy" if not beam else f"beam{beam}" if length_alpha == LENGTH_ALPHA
            else f"beam{beam}_alpha{length_alpha:g}")
    name = name if no_repeat_ngram == NO_REPEAT_NGRAM else f"{name}_norepeat{no_repeat_ngram}"
    return name if ensemble == 1 else f"{name}_ensemble{ensemble}"


def run(args):
    import json

    from capstone.support.atomic import write_json
    from capstone.data.caption_files import load_captions
    from capstone.data.shapes_facts import format_rates, scenes_of_sources
    from capstone.evaluation.evaluate_run import evaluate_baseline, evaluate_model
    from capstone.evaluation.metrics import format_scores
    from capstone.final_model import FinalModel
    from capstone.support.run_dir import load_run

    if args.beam < 0:
        raise CapstoneError(f"--beam must be a positive beam size (or 0 for greedy), got {args.beam}")
    length_alpha, no_repeat_ngram = length_alpha_from(args), no_repeat_ngram_from(args)
    ensemble_from(args)
    if bool(args.images) == bool(args.embeds) or bool(args.embeds) != bool(args.fns):
        raise CapstoneError("give --images, or --embeds and --fns")
    precision = resolve(args.precision, path="caption")
    fn_to_captions = {}
    for source in args.captions:
        fn_to_captions.update(load_captions(source))
    run = load_run(args.run_dir)
    attends = run.model_config.decoder == "attention"
    if args.images:
        if not run.encoder:
            raise CapstoneError(f"{args.run_dir}: config.json names no encoder; use --embeds/--fns")
        if not os.path.exists(args.images):
            raise CapstoneError(f"{args.images}: no such zip file or folder")
        embeds, fns = embed_for(run, args.images, precision)
    else:
        embeds, fns = read_embeddings(args.embeds, args.fns)
        check_encoder(run, args.fns)
    embeds = np.asarray(embeds, np.float32)
    pooled = embeds.mean(axis=(1, 2)) if attends and embeds.ndim == 4 else embeds  # what the baseline compares
    source = " + ".join(args.captions)
    scenes = scenes_of_sources(args.captions, fns)  # shapes data: also judge whether captions are true
    model = FinalModel.load(args.run_dir, precision=precision, ensemble=args.ensemble)
    decoder = decoder_name(args.beam, length_alpha, no_repeat_ngram, ensemble=1 + len(args.ensemble))
    report = {decoder: evaluate_model(model, embeds, fns, fn_to_captions, beam=args.beam, max_len=args.max_len,
                                      source=source, scenes=scenes, length_alpha=length_alpha,
                                      no_repeat_ngram=no_repeat_ngram)}
    report[decoder].update(precision=precision, no_repeat_ngram=no_repeat_ngram)
    if args.ensemble:
        report[decoder]["ensemble"] = [os.path.abspath(path) for path in [args.run_dir] + args.ensemble]
    if args.beam:
        report[decoder]["length_alpha"] = length_alpha
    if args.baseline:
        from capstone.data.caption_files import captions_for_fns
        from capstone.encoders.embed import embeddings_paths

        train_embeds, train_fns = read_embeddings(*embeddings_paths(args.baseline))
        report["nearest_neighbour"] = evaluate_baseline(
            train_embeds, captions_for_fns(train_fns, fn_to_captions, source), pooled, fns, fn_to_captions,
            source=source, scenes=scenes)
    out = args.out or os.path.join(args.run_dir, f"metrics_{split_name(args.images or args.embeds)}_{decoder}.json")
    write_json(out, report)
    for key, value in report.items():
        rates = f"  {format_rates(value['fully_true'])}" if "fully_true" in value else ""
        print(f"{key:18s} {format_scores(value['scores'])}{rates}")
    print(f"metrics and captions: {out}")
    print(json.dumps(report[decoder]["scores"]))  # last line: the model's scores, for scripts
