"""The exported model: sizes on disk and images/s on this machine, SavedModel vs TFLite variants.

EfficientNet-Lite0 + a decoder of the course's sizes (vocabulary 8,769, random weights: the same
arithmetic as trained ones) exported with ``export --tflite``; 64 Flickr8k photos (or synthetic
pictures without them), batches of 16, greedy captions of at most 20 words:

  SavedModel   image bytes in (decode + crop + resize + CNN + decoding loop in one graph run)
  TFLite       pixels in (decoded by OpenCV outside the timing), encoder + init + one step per word

    python bench/export.py        # ~2 minutes on 2 cores (most of it converting to TFLite)
"""

import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from capstone.config import ModelConfig  # noqa: E402
from capstone.deploy.export import export  # noqa: E402
from capstone.deploy.tflite import VARIANTS, TFLiteCaptioner, write_tflite_into  # noqa: E402
from capstone.encoders import frozen_encoder  # noqa: E402
from capstone.encoders.images import image_for_model  # noqa: E402
from synthetic import untrained_run  # noqa: E402

BATCH = 16


def folder_size(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file() and "tflite" not in f.parts)


def timed(function, batches, repeats=2):
    function(batches[0])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            function(batch)
        best = min(best, time.perf_counter() - started)
    return sum(len(b) for b in batches) / best


def main():
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    photos = sorted((REPO.parent / "shared" / "data" / "flickr8k-dev" / "images").glob("*.jpg"))[:64]
    if photos:
        files = [p.read_bytes() for p in photos]
    else:
        from serve_support import SCENES, encode_file, scene_picture
        files = [encode_file(scene_picture(*SCENES[i % 12], size=300, rng=np.random.default_rng(i)), ".jpg")
                 for i in range(64)]
    with tempfile.TemporaryDirectory() as tmp:
        run = untrained_run(pathlib.Path(tmp) / "run", 8769, ModelConfig(img_embed_size=1280))
        out = pathlib.Path(tmp) / "model"
        started = time.perf_counter()
        export(run, str(out), also=write_tflite_into, encoder=frozen_encoder("efficientnet_lite0"))
        print(f"export --tflite: {time.perf_counter() - started:.0f} s")

        model = tf.saved_model.load(str(out))
        serve = model.signatures["serving_default"]
        byte_batches = [tf.constant(files[i:i + BATCH]) for i in range(0, len(files), BATCH)]
        rows = [("SavedModel (image bytes in)", folder_size(out), timed(lambda b: serve(image_bytes=b), byte_batches))]
        pixels = np.stack([image_for_model(f, 224) for f in files])
        pixel_batches = [pixels[i:i + BATCH] for i in range(0, len(pixels), BATCH)]
        for variant, name in VARIANTS.items():
            runner = TFLiteCaptioner(str(out / "tflite"), variant, num_threads=os.cpu_count())
            rows.append((f"TFLite {variant} (pixels in)", (out / "tflite" / name).stat().st_size,
                         timed(lambda b: runner.captions(images=b), pixel_batches)))
    print(f"{'model':32s} {'size MB':>8s} {'images/s':>9s}")
    for label, size, speed in rows:
        print(f"{label:32s} {size / 2 ** 20:8.1f} {speed:9.1f}")


if __name__ == "__main__":
    main()
