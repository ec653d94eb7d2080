"""How fast are image embeddings computed? ``utils.apply_model`` against its two bounds.

For each encoder, on the same images (the Flickr8k dev photos in ../shared when present,
otherwise 240 synthetic JPEGs), packed into one zip as the course's image archives are:

  (a) pipeline:  utils.apply_model, decoding in threads while the model runs on batches
  (b) CNN only:  the same batches on images decoded beforehand, the compute bound for (a)
  (c) per image: read, decode and ``model.predict`` one image at a time with the Keras model,
      as seed tutorials do (whatever --runner says: this is the peer, not one of ours)

Target on 2 CPU cores: (a) >= 0.9 x (b) and (a) >= 3 x (c). The second holds where the per-call
overhead of ``predict`` is large next to the CNN (EfficientNet-Lite0: ~4.7 x); InceptionV3 costs
~6 GFLOPs an image, so even the CNN alone on batches (b) is only ~2 x (c) on 2 cores, and no
input pipeline can make (a) faster than (b).

    python bench/embed.py                       # both encoders, frozen graph in a Session
    python bench/embed.py --runner keras --images 100 --encoders efficientnet_lite0
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import utils  # noqa: E402
from capstone import encoders  # noqa: E402
from capstone.encoders import cnn  # noqa: E402
from capstone.support.tf_session import make_session, usable_cores  # noqa: E402

FLICKR_IMAGES = REPO.parent / "shared" / "data" / "flickr8k-dev" / "images"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", default="efficientnet_lite0,inception_v3",
                        help="comma-separated names from capstone.encoders.ENCODERS")
    parser.add_argument("--images", type=int, default=240, help="how many images (at least 200 for the report)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="apply_model decode threads (default: auto)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each; the best counts")
    parser.add_argument("--runner", choices=("session", "keras"), default="session",
                        help="session: frozen encoder graph in a tf.compat.v1 Session; keras: the Keras model")
    return parser.parse_args()


def image_bytes(count):
    """[(file name, JPEG bytes)] of ``count`` images: Flickr8k dev photos, or synthetic ones."""
    if FLICKR_IMAGES.is_dir():
        paths = sorted(FLICKR_IMAGES.glob("*.jpg"))[:count]
        return [(path.name, path.read_bytes()) for path in paths], f"{len(paths)} Flickr8k dev photos"
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        # A smooth random picture of a typical photo size, so JPEG sizes are realistic.
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        picture = cv2.resize(small, (500, 375), interpolation=cv2.INTER_CUBIC)
        ok, buf = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append((f"synthetic_{i:04d}.jpg", buf.tobytes()))
    return images, f"{count} synthetic 500x375 JPEGs"


def write_zip(path, images):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, buf in images:
            archive.writestr("images/" + name, buf)


def session_runner(name):
    """(run(batch [B, S, S, 3] raw pixels) -> [B, D], preprocess_for_model) on a frozen graph."""
    weights = encoder_weights(name)
    frozen = encoders.frozen_encoder(name, weights=weights)
    graph = tf.Graph()
    with graph.as_default():
        size = frozen.image_size
        images = tf.compat.v1.placeholder(tf.float32, [None, size, size, 3], name="images")
        embedding = encoders.import_encoder(frozen, images)  # [None, D]
    session = make_session(graph, intra_op_threads=usable_cores())

    def run(batch):
        return session.run(embedding, {images: batch})

    # The frozen graph normalises pixels itself, so images go in as [0, 255] floats.
    return run, (lambda img: img)


def keras_runner(name):
    model, preprocess_for_model = encoders.get_cnn_encoder(name, weights=encoder_weights(name))
    return model, preprocess_for_model


def encoder_weights(name):
    """ImageNet weights when they are on this machine; speed does not depend on the values."""
    if name == "inception_v3":
        path = os.path.join(cnn.keras_models_dir(), cnn.INCEPTION_WEIGHTS_FILE)
        if not os.path.exists(path):
            print("  inception_v3: ImageNet weights absent, timing random weights (same speed)")
            return None
    return "imagenet"


def batch_function(model):
    return model.predict_on_batch if hasattr(model, "predict_on_batch") else model


def bench_encoder(name, zip_path, images, args):
    size = encoders.ENCODERS[name].image_size
    model, preprocess = (session_runner if args.runner == "session" else keras_runner)(name)
    run_batch = batch_function(model)
    # (c) is the peer, so it is always the Keras model's predict on one image, as seed tutorials do.
    keras_model, single_preprocess = keras_runner(name) if args.runner == "session" else (model, preprocess)

    def single(img):
        return keras_model.predict(img[None], verbose=0)

    decoded = np.stack([  # [N, S, S, 3], decoded before (b) starts its clock
        utils.crop_and_preprocess(utils.decode_image_from_buf(buf), (size, size), preprocess)
        for _, buf in images
    ])
    run_batch(decoded[:args.batch_size])  # warm up: first calls build kernels and caches
    single(utils.crop_and_preprocess(utils.decode_image_from_buf(images[0][1]), (size, size), single_preprocess))

    def pipeline():
        return utils.apply_model(
            zip_path, model, preprocess, input_shape=(size, size), batch_size=args.batch_size,
            num_threads=args.threads, show_progress=False)[0]

    def cnn_only():
        return np.concatenate([
            np.asarray(run_batch(decoded[i:i + args.batch_size]))
            for i in range(0, len(decoded), args.batch_size)
        ])

    def per_image():
        with zipfile.ZipFile(zip_path) as archive:
            for member in sorted(archive.namelist()):
                img = utils.decode_image_from_buf(archive.read(member))
                single(utils.crop_and_preprocess(img, (size, size), single_preprocess))

    # Round robin, best of: other processes sharing the cores slow whichever run they overlap.
    best = {"a": float("inf"), "b": float("inf"), "c": float("inf")}
    outputs = {}
    for _ in range(args.repeats):
        for key, job in (("a", pipeline), ("b", cnn_only), ("c", per_image)):
            start = time.perf_counter()
            outputs[key] = job()
            best[key] = min(best[key], time.perf_counter() - start)
    pipeline_embeds, batched_embeds = outputs["a"], outputs["b"]
    pipeline_s, batched_s, per_image_s = best["a"], best["b"], best["c"]

    n = len(images)
    a, b, c = n / pipeline_s, n / batched_s, n / per_image_s
    max_diff = float(np.abs(pipeline_embeds - batched_embeds).max())
    print(f"{name:>19} | {a:8.1f} | {b:8.1f} | {c:8.1f} | {a / b:5.2f} | {a / c:5.2f} | {max_diff:.1e}",
          flush=True)


def main():
    args = parse_args()
    images, described = image_bytes(args.images)
    print(f"{described}, batch {args.batch_size}, runner {args.runner}, "
          f"decode threads {args.threads or utils.embedding.default_num_threads()}, "
          f"{usable_cores()} CPU cores, best of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        zip_path = os.path.join(tmp, "images.zip")
        write_zip(zip_path, images)
        print("            encoder | (a) img/s | (b) img/s | (c) img/s | a/b | a/c | max |a-b|")
        for name in args.encoders.split(","):
            bench_encoder(name.strip(), zip_path, images, args)


if __name__ == "__main__":
    main()
