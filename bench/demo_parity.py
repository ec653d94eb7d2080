"""Do the demo's metrics move when its decoder trains in bfloat16? Compared with the seed-to-seed range.

Issue #19 asks that bfloat16 leave the demo's metrics "within the seed-to-seed range". This script makes
the shapes demo's data and float32 embeddings once (the same as ``python -m capstone demo``), then trains
the course's decoder with the demo's settings for each training seed in float32 and in bfloat16 (the step
``--precision auto`` runs in bfloat16 on a CPU that has it), and scores every run on the demo's test
pictures, captions decoded in float32 (what ``auto`` chooses for captioning). It prints one row per run
and, per metric, whether each bfloat16 run falls inside float32's [min, max] over the seeds.

Runs are kept in --out and resumed, so an interrupted bench continues where it stopped.

    python bench/demo_parity.py                     # demo settings, seeds 0 1 2 (~40 min on 2 cores)
    python bench/demo_parity.py --quick --seeds 0 1 # the quick demo's settings (minutes)
"""

import argparse
import dataclasses
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from capstone.commands.demo import ENCODER, demo_settings, embed_split  # noqa: E402
from capstone.data.caption_files import captions_for_fns, load_captions  # noqa: E402
from capstone.data.shapes_dataset import SPLITS, make_shapes_preset  # noqa: E402
from capstone.data.shapes_facts import load_scenes  # noqa: E402
from capstone.evaluation.evaluate_run import evaluate_model  # noqa: E402
from capstone.final_model import FinalModel  # noqa: E402
from capstone.training import best_epoch, train  # noqa: E402

PRECISIONS = ("float32", "bfloat16")
SHOWN = ("Bleu_4", "METEOR", "CIDEr")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo_parity", help="data and runs (resumed if there)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--quick", action="store_true", help="the quick demo's dataset and settings")
    return parser.parse_args()


def main():
    args = parse_args()
    settings = demo_settings(args.quick)
    data_dir = os.path.join(args.out, "data")
    dataset = make_shapes_preset(data_dir, settings.preset)
    fn_to_captions = load_captions(dataset.captions_zip)
    splits = {split: embed_split(dataset.image_zips[split], os.path.join(data_dir, split), print)
              for split in SPLITS}
    captions = {split: captions_for_fns(fns, fn_to_captions, dataset.captions_zip)
                for split, (_, _, fns) in splits.items()}
    scenes = load_scenes(dataset.captions_zip, "test")
    test_embeds, _, test_fns = splits["test"]

    rows = {}
    for seed in args.seeds:
        for precision in PRECISIONS:
            run_dir = os.path.join(args.out, f"{precision}_seed{seed}")
            history = train(run_dir, splits["train"][0], captions["train"], splits["val"][0], captions["val"],
                            model_config=settings.model,
                            training_config=dataclasses.replace(settings.training, seed=seed, precision=precision),
                            encoder=ENCODER, progress=False, log=lambda _: None)
            model = FinalModel.load(run_dir, precision="float32")
            scores = {kind: evaluate_model(model, test_embeds, test_fns, fn_to_captions, beam=beam,
                                           scenes=scenes)["scores"]
                      for kind, beam in (("greedy", 0), ("beam3", 3))}
            model.close()
            rows[precision, seed] = scores
            best = best_epoch(history)
            print(f"{precision:9s} seed {seed}: best epoch {best['epoch']:2d}, val loss {best['val_loss']:.4f}; "
                  + "; ".join(f"{kind} " + " ".join(f"{m} {s[m]:.3f}" for m in SHOWN) for kind, s in scores.items()),
                  flush=True)

    print(f"\nbfloat16 inside float32's range over seeds {args.seeds} (float32 min-max | bfloat16 values):")
    inside = []
    for kind in ("greedy", "beam3"):
        for metric in SHOWN:
            f32 = [rows["float32", s][kind][metric] for s in args.seeds]
            bf16 = [rows["bfloat16", s][kind][metric] for s in args.seeds]
            ok = [min(f32) <= v <= max(f32) for v in bf16]
            inside += ok
            print(f"  {kind:6s} {metric:7s} {min(f32):.3f}-{max(f32):.3f} | "
                  + " ".join(f"{v:.3f}{'' if k else ' (outside)'}" for v, k in zip(bf16, ok))
                  + f"   means {np.mean(f32):.3f} vs {np.mean(bf16):.3f} (difference {np.mean(bf16) - np.mean(f32):+.3f}, "
                  f"float32's own spread {max(f32) - min(f32):.3f})")
    print(f"inside: {sum(inside)}/{len(inside)}")


if __name__ == "__main__":
    main()
