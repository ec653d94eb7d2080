"""``python -m capstone demo``: the whole course on a fresh machine, offline, in minutes.

    shapes dataset (made here, COCO layout) -> EfficientNet-Lite0 embeddings (and feature grids)
    -> vocabulary -> train Show and Tell and Show, Attend and Tell on the same data
    -> caption the test split -> BLEU/METEOR/ROUGE-L/CIDEr and fully true captions vs a baseline

Everything lands in one run directory (default ``runs/demo``): the usual run files of the
course's decoder (config, vocabulary, checkpoints, loss.png), ``attention/`` (the attention
decoder's run directory), ``data/`` (images, captions, embeddings), ``examples.png``,
``attention.png`` and ``metrics.json``. Every step is cached or resumable: run it again and it
picks up where it stopped.
"""

import dataclasses
import json
import os
import time

import numpy as np

from capstone.support import run_dir as runs
from capstone.data.caption_files import captions_for_fns, load_captions
from capstone.config import BEAM_SIZE, ModelConfig, TrainingConfig
from capstone.encoders.embed import embed_images, embeddings_paths, read_embeddings, save_embeddings
from capstone.encoders.spatial import embed_spatial, features_path
from capstone.evaluation.evaluate_run import evaluate_baseline, evaluate_model, plot_examples, read_images
from capstone.evaluation.metrics import format_scores
from capstone.data.shapes_dataset import SPLITS, make_shapes_preset
from capstone.data.shapes_facts import format_rates, load_scenes
from capstone.commands.common import OFFLINE_ENCODER as ENCODER
from capstone.evaluation.attention_plot import ATTENTION_EXAMPLES, save_attention_figures
from capstone.support.atomic import remove_stale_temporaries, write_json
from capstone.support.disk import writing
from capstone.support.precision import add_precision_argument, resolve, step_precisions
from capstone.final_model import FinalModel
from capstone.training import best_epoch, train



DECODERS = {"show-and-tell": ("show_and_tell",), "attention": ("attention",), "both": ("show_and_tell", "attention")}


@dataclasses.dataclass
class DemoSettings:
    preset: str             # shapes dataset size: "default" or "quick"
    training: TrainingConfig
    model: ModelConfig
    attention_training: TrainingConfig
    attention_model: ModelConfig


def demo_settings(quick):
    """Sizes that fit ~10 minutes (default, both decoders) or ~3 minutes (quick) on 2 CPU cores.

    The attention decoder's step costs ~4x the course decoder's, so it gets fewer epochs, at a
    higher learning rate. Chosen by validation loss after 12 epochs (bench/QUALITY.md): lambda 1 ->
    0.630, lambda 0 -> 0.600 (rate 0.001) and 0.598 (0.003), lambda 0.1 and rate 0.003 -> 0.597.
    """
    if quick:
        training = TrainingConfig(batch_size=64, n_epochs=8, n_batches_per_epoch=40, n_validation_batches=4,
                                  min_count=2, patience=3)
        return DemoSettings("quick", training, ModelConfig(lstm_units=128, dropout=0.1), training,
                            ModelConfig(decoder="attention", lstm_units=128, attention_units=64, dropout=0.1))
    return DemoSettings("default", TrainingConfig(batch_size=64, n_epochs=30, n_batches_per_epoch=150,
                                                  n_validation_batches=10, min_count=3, patience=4),
                        ModelConfig(dropout=0.1),
                        TrainingConfig(batch_size=64, n_epochs=12, n_batches_per_epoch=150,
                                       n_validation_batches=10, min_count=3, patience=3, learning_rate=0.003),
                        ModelConfig(decoder="attention", attention_units=128, dropout=0.1, attention_lambda=0.1))


def embed_split(image_zip, prefix, log, spatial=False, precision="float32"):
    """(pooled embeddings, feature grids or None, names) of one split, computed once, then read back."""
    embeds_fn, fns_fn = embeddings_paths(prefix)
    grids_fn = features_path(prefix)
    if os.path.exists(embeds_fn) and os.path.exists(fns_fn) and (not spatial or os.path.exists(grids_fn)):
        embeds, fns = read_embeddings(embeds_fn, fns_fn)
        return embeds, read_embeddings(grids_fn, fns_fn)[0] if spatial else None, fns
    log(f"embedding {os.path.basename(image_zip)} with {ENCODER}" + (" (and its feature grids)" if spatial else ""))
    if spatial:
        embeds, fns = embed_spatial(image_zip, ENCODER, prefix, precision=precision)
    else:
        embeds, fns = embed_images(image_zip, ENCODER, precision=precision)
    save_embeddings(prefix, embeds, fns)
    return embeds, read_embeddings(grids_fn, fns_fn)[0] if spatial else None, fns


def run_dir_of(out, decoder, decoders):
    """The course decoder trains in OUT itself; the attention decoder in OUT/attention (OUT when alone)."""
    return out if decoder == decoders[0] else os.path.join(out, "attention")


def run_demo(out="runs/demo", quick=False, log=print, decoder="both", precision="float32"):
    """Run every step; returns the metrics dict also written to OUT/metrics.json.
    precision: of the matmuls, "float32", "bfloat16" or "auto" (each step as ``--precision auto``
    chooses it: ``capstone.support.precision.resolve``)."""
    chosen = step_precisions(precision, [f"embed:{ENCODER}", *(f"train:{d}" for d in DECODERS[decoder]), "caption"])
    started = time.time()
    settings = demo_settings(quick)
    decoders = DECODERS[decoder]
    data_dir = os.path.join(out, "data")
    again = "run 'demo' again: it picks up where it stopped"
    log(f"1/5 shapes dataset ({settings.preset}) in {data_dir}")
    with writing(data_dir, again):
        remove_stale_temporaries(data_dir)  # of a demo killed while writing
        dataset = make_shapes_preset(data_dir, settings.preset)
    fn_to_captions = load_captions(dataset.captions_zip)

    log("2/5 image embeddings")
    spatial = "attention" in decoders
    splits = {split: embed_split(dataset.image_zips[split], os.path.join(data_dir, split), log, spatial,
                                 chosen[f"embed:{ENCODER}"])
              for split in SPLITS}
    captions = {split: captions_for_fns(fns, fn_to_captions, dataset.captions_zip)
                for split, (_, _, fns) in splits.items()}

    for name in decoders:
        run_dir = run_dir_of(out, name, decoders)
        log(f"3/5 training the {name} decoder in {run_dir}")
        inputs = 1 if name == "attention" else 0  # feature grids, or pooled embeddings
        model_config = settings.attention_model if name == "attention" else settings.model
        training_config = settings.attention_training if name == "attention" else settings.training
        history = train(run_dir, splits["train"][inputs], captions["train"], splits["val"][inputs], captions["val"],
                        model_config=None if runs.is_run_dir(run_dir) else model_config,
                        training_config=dataclasses.replace(training_config, precision=chosen[f"train:{name}"]),
                        encoder=ENCODER, log=log)
        runs.record_training_data(run_dir, runs.SHAPES, [dataset.captions_zip], images=len(splits["train"][2]))
        best = best_epoch(history)
        if best:
            log(f"  best epoch {best['epoch']}: val loss {best['val_loss']:.3f} (kept in {run_dir}/{runs.BEST}/)")

    log("4/5 captioning the test split (greedy, beam search, nearest-neighbour baseline)")
    test_embeds, test_grids, test_fns = splits["test"]
    scenes = load_scenes(dataset.captions_zip, "test")  # what each test picture holds: are the captions true?
    results, maps = {}, None
    for name in decoders:
        model = FinalModel.load(run_dir_of(out, name, decoders), precision=chosen["caption"])
        inputs = np.asarray(test_grids, np.float32) if name == "attention" else test_embeds
        results[name] = {kind: evaluate_model(model, inputs, test_fns, fn_to_captions, beam=beam, scenes=scenes)
                         for kind, beam in (("greedy", 0), (f"beam{BEAM_SIZE}", BEAM_SIZE))}
        if name == "attention":
            maps = model.attention_maps(embeddings=inputs[:ATTENTION_EXAMPLES])
        model.close()
    train_embeds, _, _ = splits["train"]
    baseline = evaluate_baseline(train_embeds, captions["train"], test_embeds, test_fns, fn_to_captions,
                                 scenes=scenes)

    log("5/5 examples.png, attention.png and metrics.json")
    main = results[decoders[0]]
    shown = test_fns[:12]
    pictures = read_images(dataset.image_zips["test"], shown)
    with writing(os.path.join(out, "examples.png"), again):
        plot_examples(pictures, [main["greedy"]["captions"][fn] for fn in shown],
                      [fn_to_captions[fn] for fn in shown], os.path.join(out, "examples.png"),
                      decoder=f"{decoders[0]}, greedy")
    if maps is not None:
        with writing(os.path.join(out, "attention.png"), again):
            save_attention_figures(pictures[:ATTENTION_EXAMPLES], maps, shown, os.path.join(out, "attention.png"))

    def entry(result):
        return {**result["scores"], "fully_true": result["fully_true"]}

    metrics = {
        "test_images": len(test_fns),
        "greedy": entry(main["greedy"]),                      # the first decoder's, as before
        f"beam{BEAM_SIZE}": entry(main[f"beam{BEAM_SIZE}"]),
        "nearest_neighbour": entry(baseline),
        **{name: {**entry(result["greedy"]), f"beam{BEAM_SIZE}": entry(result[f"beam{BEAM_SIZE}"])}
           for name, result in results.items()},
        "examples": {fn: {**{f"{name}_greedy": results[name]["greedy"]["captions"][fn] for name in decoders},
                          "beam": main[f"beam{BEAM_SIZE}"]["captions"][fn],
                          "references": fn_to_captions[fn]} for fn in shown},
        "seconds": round(time.time() - started, 1),
        "precision": chosen,
    }
    with writing(os.path.join(out, "metrics.json"), again):
        write_json(os.path.join(out, "metrics.json"), metrics)
    for name in decoders:
        for kind in ("greedy", f"beam{BEAM_SIZE}"):
            scores = metrics[name] if kind == "greedy" else metrics[name][kind]
            log(f"  {name + ' ' + kind:24s} {format_scores(scores)}  {format_rates(scores['fully_true'])}")
    log(f"  {'nearest_neighbour':24s} {format_scores(baseline['scores'])}  {format_rates(baseline['fully_true'])}")
    return metrics


def add_arguments(p):
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--photos", metavar="DIR", help="instead of the shapes: a folder (or zip) of your captioned photos")
    p.add_argument("--captions", metavar="SRC", help="with --photos: their captions (any format 'train' reads)")
    p.add_argument("--seed", type=int, default=0, help="with --photos: seed of the split when SRC defines none")
    p.add_argument("--quick", action="store_true", help="small dataset and short training (about 3 minutes)")
    p.add_argument("--decoder", choices=sorted(DECODERS), default="both",
                   help="the course's decoder (show-and-tell), Show, Attend and Tell (attention), or both side by "
                        "side on the same data (default)")
    add_precision_argument(p)


def run(args):
    log = lambda text: print(text, flush=True)  # noqa: E731
    resolve(args.precision)  # --precision bfloat16 without the hardware fails before any work
    if args.photos or args.captions:
        from capstone.commands.photos import run_photos_demo
        from capstone.errors import CapstoneError

        if not (args.photos and args.captions):
            raise CapstoneError("give both --photos DIR and --captions SRC (or neither, for the shapes demo)")
        if not os.path.exists(args.photos):
            raise CapstoneError(f"{args.photos}: no such folder or zip of photos")
        metrics = run_photos_demo(args.photos, args.captions, args.out, log=log, seed=args.seed, precision=args.precision)
        print(f"run directory: {args.out}  (examples.png, attention.png, loss.png, metrics.json); caption photos "
              f"with it: python -m capstone caption {args.out} photo.jpg")
        print(json.dumps({name: metrics[name] for name in ("greedy", f"beam{BEAM_SIZE}", "nearest_neighbour")}))
        return
    metrics = run_demo(args.out, quick=args.quick, log=log, decoder=args.decoder, precision=args.precision)
    print(f"run directory: {args.out}  (examples.png, loss.png, metrics.json); caption pictures with it: "
          f"python -m capstone caption {args.out} picture.jpg  (it has learnt only shapes: for photos, "
          f"README 'Real photos')")
    print(json.dumps({name: metrics[name] for name in ("greedy", f"beam{BEAM_SIZE}", "nearest_neighbour")}))
