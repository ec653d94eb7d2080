"""EfficientNet-Lite0/1/2 on Flickr8k: embedding speed, and does resizing 224-pixel photos to the
native 240 / 260 help? Measured side by side in one run, on the validation split only.

Flickr8k's photos here are 224 x 224. Lite1 was trained at 240 and Lite2 at 260; upscaling adds no
detail but shows objects at the scale the network learned. The measure of an embedding is the
nearest-neighbour caption baseline on it (Devlin et al. 2015: the consensus caption of the 5 most
similar training photos), scored on the val photos: it needs no training, so it compares features
alone. Each setting is timed on the same decoded photos (the CNN only, in a Session, as ``embed``).

    python bench/lite_sizes.py --split /tmp/f8/all --captions ../shared/data/flickr8k/captions.csv \\
        --images ../shared/data/flickr8k/images --out /tmp/enc/bench

Writes OUT/<encoder>-<size>_{train,val}_img_{embeds,fns}.pickle (the same numbers ``embed`` gives).
The images/s of that run come one setting after another, so on a shared machine they follow the load;
``--speed N`` instead times every setting on the same N photos, round-robin for 3 rounds (best round
counts), so that all see the same load, and prints the ratios to the first setting:

    python bench/lite_sizes.py --speed 160 --split /tmp/f8/all --images ../shared/data/flickr8k/images \
        --settings efficientnet_lite0:224,efficientnet_lite1:240,efficientnet_lite2:260
"""

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from capstone.data.caption_files import captions_for_fns, load_captions  # noqa: E402
from capstone.encoders import ENCODERS, freeze_encoder, frozen_encoder, get_cnn_encoder  # noqa: E402
from capstone.encoders.embed import EncoderSession, save_embeddings  # noqa: E402
from capstone.evaluation.baseline import nearest_neighbour_captions  # noqa: E402
from capstone.evaluation.metrics import score_captions  # noqa: E402
from utils import crop_and_preprocess, decode_image_from_buf, read_pickle  # noqa: E402

SETTINGS = (("efficientnet_lite0", 224), ("efficientnet_lite1", 224), ("efficientnet_lite1", 240),
            ("efficientnet_lite2", 224), ("efficientnet_lite2", 260))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", required=True, help="PREFIX of an existing split: PREFIX_{train,val}_img_fns.pickle")
    parser.add_argument("--captions", help="needed unless --speed")
    parser.add_argument("--images", required=True, help="folder of the photos")
    parser.add_argument("--out", help="needed unless --speed")
    parser.add_argument("--speed", type=int, metavar="N", help="only time the settings, side by side, on N val photos")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--settings", default=",".join(f"{name}:{size}" for name, size in SETTINGS))
    return parser.parse_args()


def decoded(folder, fns):
    """uint8 [N, H, W, 3] of the named photos (all 224 x 224 here)."""
    return [decode_image_from_buf((pathlib.Path(folder) / fn).read_bytes(), name=fn) for fn in fns]


def encoder_at(name, size):
    """The frozen encoder of ``name`` taking size x size pixels (its cached one at its native size)."""
    if size == ENCODERS[name].image_size:
        return frozen_encoder(name)
    model, preprocess = get_cnn_encoder(name)
    return freeze_encoder(model, size, preprocess, name)


def embed(session, photos, size, batch_size):
    """-> (float32 [N, 1280], seconds in the CNN)."""
    out, seconds = [], 0.0
    for start in range(0, len(photos), batch_size):
        batch = np.stack([crop_and_preprocess(p, (size, size), lambda x: x) for p in photos[start:start + batch_size]])
        started = time.perf_counter()
        out.append(session(batch))
        seconds += time.perf_counter() - started
    return np.concatenate(out), seconds


def speed(args):
    photos = decoded(args.images, read_pickle(f"{args.split}_val_img_fns.pickle")[:args.speed])
    settings = [(name, int(size)) for name, size in (s.split(":") for s in args.settings.split(","))]
    sessions = [EncoderSession(encoder_at(name, size)) for name, size in settings]
    best = [0.0] * len(settings)
    for _ in range(3):
        for i, ((name, size), session) in enumerate(zip(settings, sessions)):
            session(np.zeros((2, size, size, 3), np.float32))  # warm-up, not timed
            best[i] = max(best[i], len(photos) / embed(session, photos, size, args.batch_size)[1])
    print("| encoder | input | images/s (CNN, best of 3 rounds) | x first |\n|---|---|---|---|")
    for (name, size), per_second in zip(settings, best):
        print(f"| {name} | {size} | {per_second:.1f} | {per_second / best[0]:.2f} |")


def main():
    args = parse_args()
    if args.speed:
        return speed(args)
    fns = {part: read_pickle(f"{args.split}_{part}_img_fns.pickle") for part in ("train", "val")}
    fn_to_captions = load_captions(args.captions)
    train_captions = captions_for_fns(fns["train"], fn_to_captions, args.captions)
    val_references = captions_for_fns(fns["val"], fn_to_captions, args.captions)
    photos = {part: decoded(args.images, names) for part, names in fns.items()}
    rows = []
    for setting in args.settings.split(","):
        name, size = setting.split(":")
        session = EncoderSession(encoder_at(name, int(size)))
        session(np.zeros((2, int(size), int(size), 3), np.float32))  # warm-up, not timed
        embeds, seconds = {}, 0.0
        for part in ("train", "val"):
            embeds[part], took = embed(session, photos[part], int(size), args.batch_size)
            seconds += took
            save_embeddings(os.path.join(args.out, f"{name}-{size}_{part}"), embeds[part], fns[part])
        session.close()
        candidates = nearest_neighbour_captions(embeds["train"], train_captions, embeds["val"], k=5)
        scores = score_captions(dict(zip(fns["val"], val_references)), dict(zip(fns["val"], candidates)))
        per_second = sum(len(p) for p in photos.values()) / seconds
        rows.append((name, int(size), per_second, scores))
        print(f"{name} at {size}: {per_second:.1f} images/s; val NN baseline BLEU-4 {scores['Bleu_4']:.3f} "
              f"METEOR {scores['METEOR'] or 0:.3f} CIDEr {scores['CIDEr']:.3f}", flush=True)
    print("\n| encoder | input | images/s | x Lite0 speed | NN BLEU-4 | NN METEOR | NN CIDEr |")
    print("|---|---|---|---|---|---|---|")
    for name, size, per_second, scores in rows:
        print(f"| {name} | {size} | {per_second:.1f} | {per_second / rows[0][2]:.2f} | {scores['Bleu_4']:.3f} "
              f"| {scores['METEOR'] or 0:.3f} | {scores['CIDEr']:.3f} |")


if __name__ == "__main__":
    main()
