"""``python -m capstone export``: a run as a SavedModel (TensorFlow Serving) and TFLite models (edge)."""

import os
import sys


def add_arguments(p):
    p.add_argument("run_dir", help="run directory written by 'train' (its image encoder goes in front)")
    p.add_argument("--out", required=True, help="folder to write; the SavedModel itself (TensorFlow Serving: "
                                                "mount it as MODEL_DIR/1)")
    p.add_argument("--force", action="store_true", help="replace --out when it exists")
    p.add_argument("--tflite", action="store_true",
                   help="also write OUT/tflite/: float32, float16 and dynamic-range int8 models + decoder.json")


def run(args):
    import functools

    from capstone.deploy.export import export
    from capstone.deploy.tflite import write_tflite_into

    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    also = functools.partial(write_tflite_into, log=log) if args.tflite else None
    written = export(args.run_dir, args.out, force=args.force, also=also, log=log)
    for name in written:
        size = os.path.getsize(os.path.join(args.out, name))
        print(f"{os.path.join(args.out, name)}\t{size / 2 ** 20:.2f} MB")
