"""Choose `train`'s defaults by measurement: train one setting per run, score it on the validation split.

Usage (embeddings from `embed ... --spatial` + `split --val 500 --test 1000 --seed 0`):

    python bench/sweep.py --prefix /tmp/f8/all --captions ../shared/data/flickr8k/captions.csv \
        --out /tmp/sweep [--only NAME ...] [--seeds 0 1 2]
    python bench/sweep.py ... --decoding RUN_DIR     # beam size x length penalty on one trained run

Every number comes from the *validation* split (PREFIX_val_*); the test split is never read here, so the
choices it prints can be reported on the test split without having been tuned on it. Runs already trained
are not trained again (delete a run directory to redo it). bench/QUALITY.md records what it printed.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# name -> train flags. "base" is the recipe before this sweep (dropout 0.5, min count 5, rate 0.001, no decay).
BASE = ["--dropout", "0.5", "--min-count", "5", "--patience", "3", "--epochs", "30",
        "--batches-per-epoch", "150", "--n-validation-batches", "10"]
SETTINGS = {
    "base": [],
    "dropout0.0": ["--dropout", "0.0"],
    "dropout0.3": ["--dropout", "0.3"],
    "dropout0.6": ["--dropout", "0.6"],
    "min_count3": ["--min-count", "3"],
    "min_count10": ["--min-count", "10"],
    "lr0.003": ["--learning-rate", "0.003"],
    "lr0.0005": ["--learning-rate", "0.0005"],
    "decay0.5": ["--lr-decay", "0.5"],
    "lr0.003_decay0.5": ["--learning-rate", "0.003", "--lr-decay", "0.5"],
    "attention": ["--decoder", "attention"],
    "attention_lambda0.1": ["--decoder", "attention", "--attention-lambda", "0.1"],
    "attention_decay0.5": ["--decoder", "attention", "--lr-decay", "0.5"],
}
# Whole command lines, not added to BASE: `train` with no flags at all (given a validation set), and the
# issue's measurement (the old defaults: 12 epochs of 1000 batches, no early stopping, + dropout 0.5).
RAW = {
    "defaults": [],
    "old_defaults_dropout0.5": ["--dropout", "0.5", "--patience", "0", "--lr-decay", "1"],
}


def data_flags(prefix, captions, attention):
    kind = "img_features.npy" if attention else "img_embeds.pickle"
    return ["--train-embeds", f"{prefix}_train_{kind}", "--train-fns", f"{prefix}_train_img_fns.pickle",
            "--val-embeds", f"{prefix}_val_{kind}", "--val-fns", f"{prefix}_val_img_fns.pickle",
            "--captions", captions]


def train_run(name, flags, seed, args):
    run = os.path.join(args.out, f"{name}_seed{seed}")
    scores_file = os.path.join(run, "sweep_val.json")
    if os.path.exists(scores_file):
        with open(scores_file) as f:
            return json.load(f)
    extra = RAW[name] if name in RAW else BASE + flags
    attention = "attention" in extra
    command = [sys.executable, "-m", "capstone", "train", "--quiet", "--seed", str(seed), "--out", run,
               *data_flags(args.prefix, args.captions, attention), *extra]
    subprocess.run(command, check=True, cwd=ROOT)
    scores = {"history": _history(run)}
    for beam in (0, 3):
        scores["beam3" if beam else "greedy"] = evaluate(run, beam, args, attention)
    with open(scores_file, "w") as f:
        json.dump(scores, f)
    return scores


def _history(run):
    with open(os.path.join(run, "history.json")) as f:
        history = json.load(f)
    best = min(history, key=lambda h: h["val_loss"])  # what best/ holds, and so what is evaluated
    return {"epochs": len(history), "best_epoch": best["epoch"], "best_val_loss": best["val_loss"]}


def evaluate(run, beam, args, attention):
    kind = "img_features.npy" if attention else "img_embeds.pickle"
    out = os.path.join(run, f"metrics_val_{'beam%d' % beam if beam else 'greedy'}.json")
    result = subprocess.run([sys.executable, "-m", "capstone", "evaluate", run, "--embeds", f"{args.prefix}_val_{kind}",
                             "--fns", f"{args.prefix}_val_img_fns.pickle", "--captions", args.captions,
                             "--beam", str(beam), "--out", out], check=True, cwd=ROOT, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def decoding_sweep(run, args):
    """Beam size x length penalty on one trained run: validation CIDEr / BLEU-4 / METEOR and mean length."""
    import numpy as np

    from capstone.data.caption_files import captions_for_fns, load_captions
    from capstone.encoders.embed import read_embeddings
    from capstone.evaluation.evaluate_run import score_split
    from capstone.final_model import FinalModel

    model = FinalModel.load(run)
    kind = "img_features.npy" if model.attends else "img_embeds.pickle"
    embeds, fns = read_embeddings(f"{args.prefix}_val_{kind}", f"{args.prefix}_val_img_fns.pickle")
    references = captions_for_fns(fns, load_captions(args.captions))
    print("| beam | length alpha | CIDEr | BLEU-4 | METEOR | mean words |")
    print("|---|---|---|---|---|---|")
    for beam, alpha in [(1, 0.0), (3, 0.0), (3, 0.5), (3, 1.0), (5, 0.5), (5, 1.0)]:
        texts = []
        for start in range(0, len(fns), 100):
            batch = np.asarray(embeds[start:start + 100], np.float32)
            texts += [found[0][0] for found in model.beam_captions(embeddings=batch, beam_size=beam, length_alpha=alpha)]
        scores = score_split(fns, references, texts)
        words = np.mean([len(t.split()) for t in texts])
        meteor = "-" if scores["METEOR"] is None else f"{scores['METEOR']:.3f}"  # None: Java timed out
        print(f"| {beam} | {alpha} | {scores['CIDEr']:.3f} | {scores['Bleu_4']:.3f} | {meteor} | "
              f"{words:.1f} |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prefix", required=True, help="PREFIX of PREFIX_{train,val}_img_*")
    p.add_argument("--captions", required=True)
    p.add_argument("--out", default="/tmp/sweep")
    p.add_argument("--only", nargs="*", help="setting names (default: all)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--decoding", help="a trained run: sweep beam size and length penalty instead")
    args = p.parse_args()
    if args.decoding:
        return decoding_sweep(args.decoding, args)
    print("| setting | seed | epochs (best) | best val loss | val CIDEr greedy | beam 3 | BLEU-4 beam 3 | METEOR beam 3 |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.only or [*SETTINGS, *RAW]:
        for seed in args.seeds:
            s = train_run(name, SETTINGS.get(name), seed, args)
            h = s["history"]
            print(f"| {name} | {seed} | {h['epochs']} ({h['best_epoch']}) | {h['best_val_loss']:.3f} | "
                  f"{s['greedy']['CIDEr']:.3f} | {s['beam3']['CIDEr']:.3f} | {s['beam3']['Bleu_4']:.3f} | "
                  f"{s['beam3']['METEOR']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
