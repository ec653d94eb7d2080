"""``python -m capstone demo --photos DIR --captions SRC``: the demo's pipeline on real captioned photos.

    photos -> EfficientNet-Lite0 embeddings and feature grids -> the file's split (Flickr8k lists,
    split JSON) or a seeded one -> train the attention decoder, validation and early stopping
    -> caption the test photos greedily and with beam search -> BLEU/METEOR/ROUGE-L/CIDEr vs the
    nearest-neighbour baseline

The run directory looks like the shapes demo's (config, vocabulary, checkpoints, ``data/``,
``examples.png``, ``attention.png``, ``metrics.json``) and every step is cached or resumable.
The settings are the ones measured best on ../shared/data/flickr8k (README 'Real photos').
"""

import dataclasses
import os
import time

import numpy as np

from capstone.commands.common import OFFLINE_ENCODER as ENCODER
from capstone.commands.split import given_parts, random_parts
from capstone.config import BEAM_SIZE, ModelConfig, TrainingConfig
from capstone.data.caption_files import captions_for_fns, load_captions, load_split_lists
from capstone.encoders.embed import embeddings_paths, read_embeddings, save_embeddings
from capstone.encoders.spatial import embed_spatial, features_path, write_rows
from capstone.evaluation.attention_plot import ATTENTION_EXAMPLES, save_attention_figures
from capstone.evaluation.evaluate_run import evaluate_baseline, evaluate_model, plot_examples, read_images
from capstone.evaluation.metrics import format_scores
from capstone.final_model import FinalModel
from capstone.support import run_dir as runs
from capstone.support.atomic import write_json
from capstone.support.disk import writing
from capstone.support.precision import step_precisions
from capstone.training import best_epoch, train

# Measured on Flickr8k (5,168 training photos, 500 validation, 1,000 test; README 'Real photos'):
# the attention decoder with dropout 0.5 on everything it reads, and early stopping.
MODEL = ModelConfig(decoder="attention", dropout=0.5)
TRAINING = TrainingConfig(n_epochs=30, n_batches_per_epoch=150, n_validation_batches=10, min_count=5, patience=3)
VAL_IMAGES, TEST_IMAGES = 500, 1000  # at most; 10 % each of a smaller set
# Captions say no word pair twice ("a man rides a bike on a bike"): validation CIDEr +0.01 to +0.02 with beam
# search, +0.008 to +0.011 greedy, for cross-entropy-trained attention decoders on Flickr8k (bench/QUALITY.md,
# "no word pair twice").
NO_REPEAT_NGRAM = 2
SPLITS = ("train", "val", "test")


def embed_photos(photos, data_dir, log, precision="float32"):
    """(pooled [N, D], names) of every photo, and the grids file beside them; computed once."""
    prefix = os.path.join(data_dir, "all")
    if not (os.path.exists(features_path(prefix)) and all(map(os.path.exists, embeddings_paths(prefix)))):
        log(f"embedding {photos} with {ENCODER} (and its feature grids)")
        embeds, fns = embed_spatial(photos, ENCODER, prefix, precision=precision)
        save_embeddings(prefix, embeds, fns)
    return read_embeddings(*embeddings_paths(prefix))


def split_photos(captions_source, data_dir, seed, log):
    """data/{train,val,test}: the split the captions file defines, or a seeded one; made once."""
    if all(os.path.exists(features_path(os.path.join(data_dir, split))) for split in SPLITS):
        return
    prefix = os.path.join(data_dir, "all")
    embeds, fns = read_embeddings(*embeddings_paths(prefix))
    grids, _ = read_embeddings(features_path(prefix), embeddings_paths(prefix)[1])
    lists = load_split_lists(captions_source)
    if lists is not None:
        log(f"split as {captions_source} defines it")
        parts = given_parts(fns, lists, captions_source)
    else:
        n = len(fns)
        val, test = min(VAL_IMAGES, max(1, n // 10)), min(TEST_IMAGES, max(1, n // 10))
        log(f"seeded split (seed {seed}): {val} validation and {test} test photos, the rest for training")
        parts = random_parts(n, val, test, seed, prefix)
    for split, rows in parts.items():
        rows = np.sort(rows)
        write_rows(features_path(os.path.join(data_dir, split)), grids, rows)
        save_embeddings(os.path.join(data_dir, split), embeds[rows], [fns[i] for i in rows])


def run_photos_demo(photos, captions_source, out, log=print, seed=0, precision="float32"):
    """Run every step; returns the metrics dict also written to OUT/metrics.json.
    precision: "float32", "bfloat16" or "auto" (each step as its own command would choose it)."""
    chosen = step_precisions(precision, [f"embed:{ENCODER}", f"train:{MODEL.decoder}", "caption"])
    started, again = time.time(), "run the same command again: it picks up where it stopped"
    data_dir = os.path.join(out, "data")
    with writing(data_dir, again):
        os.makedirs(data_dir, exist_ok=True)
    fn_to_captions = load_captions(captions_source)
    log("1/4 image embeddings and feature grids")
    embed_photos(photos, data_dir, log, chosen[f"embed:{ENCODER}"])
    split_photos(captions_source, data_dir, seed, log)
    data = {}
    for split in SPLITS:
        prefix = os.path.join(data_dir, split)
        pooled, fns = read_embeddings(*embeddings_paths(prefix))
        grids, _ = read_embeddings(features_path(prefix), embeddings_paths(prefix)[1])
        data[split] = (pooled, grids, fns, captions_for_fns(fns, fn_to_captions, captions_source))

    log(f"2/4 training the attention decoder in {out} ({len(data['train'][2])} photos)")
    history = train(out, data["train"][1], data["train"][3], data["val"][1], data["val"][3],
                    model_config=None if runs.is_run_dir(out) else MODEL,
                    training_config=dataclasses.replace(TRAINING, precision=chosen[f"train:{MODEL.decoder}"]),
                    encoder=ENCODER, log=log)
    runs.record_training_data(out, "captions", [os.path.abspath(captions_source)], images=len(data["train"][2]))
    best = best_epoch(history)
    if best:
        log(f"  best epoch {best['epoch']}: val loss {best['val_loss']:.3f}")

    log(f"3/4 captioning the {len(data['test'][2])} test photos (greedy, beam search, nearest-neighbour baseline)")
    test_pooled, test_grids, test_fns, _ = data["test"]
    model = FinalModel.load(out, precision=chosen["caption"])
    grids = np.asarray(test_grids, np.float32)
    greedy = evaluate_model(model, grids, test_fns, fn_to_captions, source=captions_source,
                            no_repeat_ngram=NO_REPEAT_NGRAM)
    beam = evaluate_model(model, grids, test_fns, fn_to_captions, beam=BEAM_SIZE, source=captions_source,
                          no_repeat_ngram=NO_REPEAT_NGRAM)
    maps = model.attention_maps(embeddings=grids[:ATTENTION_EXAMPLES], no_repeat_ngram=NO_REPEAT_NGRAM)
    model.close()
    baseline = evaluate_baseline(data["train"][0], data["train"][3], test_pooled, test_fns, fn_to_captions,
                                 source=captions_source)

    log("4/4 examples.png, attention.png and metrics.json")
    shown = test_fns[:12]
    pictures = read_images(photos, shown)
    with writing(os.path.join(out, "examples.png"), again):
        plot_examples(pictures, [greedy["captions"][fn] for fn in shown], [fn_to_captions[fn] for fn in shown],
                      os.path.join(out, "examples.png"), decoder="attention, greedy")
        save_attention_figures(pictures[:ATTENTION_EXAMPLES], maps, shown, os.path.join(out, "attention.png"))
    metrics = {"test_images": len(test_fns), "greedy": greedy["scores"], f"beam{BEAM_SIZE}": beam["scores"],
               "nearest_neighbour": baseline["scores"],
               "attention": {**greedy["scores"], f"beam{BEAM_SIZE}": beam["scores"]},
               "examples": {fn: {"attention_greedy": greedy["captions"][fn], "beam": beam["captions"][fn],
                                 "references": fn_to_captions[fn]} for fn in shown},
               "greedy_no_repeat_ngram": NO_REPEAT_NGRAM, "beam_no_repeat_ngram": NO_REPEAT_NGRAM,
               "seconds": round(time.time() - started, 1), "precision": chosen}
    with writing(os.path.join(out, "metrics.json"), again):
        write_json(os.path.join(out, "metrics.json"), metrics)
    for name in ("greedy", f"beam{BEAM_SIZE}", "nearest_neighbour"):
        log(f"  {name:18s} {format_scores(metrics[name])}")
    return metrics
