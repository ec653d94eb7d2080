"""PREFIX_img_meta.json: how a set of embeddings was made, and which extra views it holds.

EfficientNet-Lite0, -Lite1 and -Lite2 all give 1280-d embeddings, so the size alone cannot say
which network made them (and so which one ``caption`` must run on a new photo). ``embed`` writes

    {"encoder": "efficientnet_lite1", "image_size": 240, "views": ["flip", "crop"],
     "weights": "imagenet", "precision": "bfloat16", "images": 6668}

beside the pickles, ``split`` copies it to every part (with the part's own count, and the views in the
train part only), and ``train`` reads it. Embeddings made before this file existed have none: then the
encoder is guessed from the size, as before, and there are no views. (Embeddings made between the two kept
weights, precision and count in a separate PREFIX_embed.json, which nothing reads.)
"""

import json
import os

from capstone.errors import CapstoneError
from capstone.support.atomic import atomic_open
from capstone.support.disk import writing

FNS_SUFFIX = "_img_fns.pickle"


def meta_path(prefix):
    return f"{prefix}_img_meta.json"


def prefix_of(fns_path):
    """"runs/f/all_train_img_fns.pickle" -> "runs/f/all_train"; None for a file not named that way."""
    fns_path = os.fspath(fns_path)
    return fns_path[:-len(FNS_SUFFIX)] if fns_path.endswith(FNS_SUFFIX) else None


def save_meta(prefix, encoder, image_size=None, views=(), weights=None, precision=None, images=None):
    """Write PREFIX_img_meta.json atomically; returns its path. ``weights``, ``precision`` and ``images``
    (the encoder's weights, the precision it ran in, how many images) are recorded for people to read."""
    path = meta_path(prefix)
    record = {"encoder": encoder, "image_size": image_size, "views": list(views),
              "weights": weights, "precision": precision, "images": images}
    with writing(path, "run the same command again"), atomic_open(path, "w") as file:
        json.dump(record, file, indent=1)
    return path


def read_meta(prefix):
    """The record of PREFIX_img_meta.json, or None when there is none (older embeddings)."""
    if prefix is None or not os.path.exists(meta_path(prefix)):
        return None
    path = meta_path(prefix)
    try:
        with open(path) as file:
            record = json.load(file)
    except (OSError, ValueError) as error:
        raise CapstoneError(f"{path}: cannot read it as JSON ({error}); delete it or run 'embed' again") from None
    if not isinstance(record, dict) or not isinstance(record.get("encoder"), str) or \
            not isinstance(record.get("views", []), list):
        raise CapstoneError(f"{path}: expected {{\"encoder\": name, \"image_size\": n, \"views\": [names]}}")
    record.setdefault("views", [])
    return record
