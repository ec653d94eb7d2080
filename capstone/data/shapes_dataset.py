"""A tiny captioning dataset the package draws itself: coloured shapes with true captions.

Every image shows 1-3 shapes (circle, square, triangle, star, diamond) in 6 colours and
two sizes on a grey background that is plain, noisy, shaded or striped. Each image has 5
captions from a small grammar, all true of the picture (colours, counts, sizes, where the
shapes are), worded differently:

    "a small red circle left of a big blue square"
    "Two green triangles on a striped background."
    "there is an orange star in the top left corner"

The files use the course's COCO layout, so they go through the same loaders as real data:

    out_dir/shapes_train.zip      train/shapes_train_000000.jpg, ... (also val, test)
    out_dir/captions_shapes.zip   annotations/captions_{train,val,test}.json (COCO format)
                                  annotations/scenes_{train,val,test}.json (what was drawn)
    out_dir/shapes_manifest.json  the arguments and file sizes; a complete dataset is reused

    data = make_shapes_dataset("data/shapes")        # or make_shapes_preset(..., "quick")
    load_captions(data.captions_source("train"))     # {"shapes_train_000000.jpg": [5 captions]}

Three small modules: ``shapes_scenes`` (what a picture holds, and drawing it),
``shapes_captions`` (the grammar) and this one (examples, splits, files).

Everything comes from the seed: the same seed gives byte-identical files. Image ``i`` of a
split depends only on (seed, split, i), so a bigger dataset starts with the smaller one.
"""

import dataclasses
import json
import os
import zipfile

import cv2
import numpy as np
from tqdm.auto import tqdm

from capstone.support.atomic import atomic_open, write_json
from capstone.errors import CapstoneError
from capstone.data.shapes_captions import CAPTIONS_PER_IMAGE, make_captions
from capstone.data.shapes_scenes import make_scene, render_scene

# Bump when the drawing or the grammar changes: old datasets on disk are then rebuilt.
GENERATOR_VERSION = 1

# Named sizes. "default" fits the ~10 minute demo on 2 CPU cores (embedding runs at about
# 30-60 images/s: ~4.5 minutes in all on ours); "quick" is for CI. Three-shape scenes need
# the bigger training set: with 1,500 images the test CIDEr was 2.45, with 6,000 it is 2.82.
PRESETS = {
    "default": {"n_train": 6000, "n_val": 300, "n_test": 300},
    "quick": {"n_train": 300, "n_val": 60, "n_test": 60},
}
SPLITS = ("train", "val", "test")
SPLIT_SEED_CODES = {"train": 0, "val": 1, "test": 2}  # mixed into the seed of every image
SPLIT_IMAGE_ID_OFFSETS = {"train": 0, "val": 1_000_000, "test": 2_000_000}  # COCO image ids
JPEG_QUALITY = 90
MANIFEST_NAME = "shapes_manifest.json"
CAPTIONS_ZIP_NAME = "captions_shapes.zip"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates keep the zips byte-identical


def make_example(seed, split, index, image_size=224):
    """Image ``index`` of ``split``: (BGR uint8 picture [S, S, 3], 5 captions, scene dict)."""
    rng = np.random.default_rng([seed, SPLIT_SEED_CODES[split], index])
    scene = make_scene(rng)
    captions = make_captions(rng, scene)
    picture = render_scene(scene, image_size, rng)
    return picture, captions, scene


# ---------------------------------------------------------------------------------------
# Files: image zips, the COCO captions zip and the manifest.


@dataclasses.dataclass(frozen=True)
class ShapesDataset:
    """Where a generated dataset lives."""

    out_dir: str
    image_zips: dict  # {"train": ".../shapes_train.zip", "val": ..., "test": ...}
    captions_zip: str  # .../captions_shapes.zip
    counts: dict  # {"train": 1500, "val": 200, "test": 200}

    def captions_member(self, split):
        return f"annotations/captions_{split}.json"

    def captions_source(self, split):
        """"<captions zip>:annotations/captions_<split>.json", for ``load_captions``."""
        return f"{self.captions_zip}:{self.captions_member(split)}"


def image_file_name(split, index):
    """The COCO file name of an image: "shapes_train_000123.jpg" (unique over all splits)."""
    return f"shapes_{split}_{index:06d}.jpg"


def _zip_info(name, compress):
    """A zip member header that does not depend on the clock or the platform."""
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED  # JPEGs do not shrink
    info.create_system = 3  # "Unix", whatever machine wrote it
    info.external_attr = 0o644 << 16
    return info


def _write_split(path, split, count, image_size, seed):
    """Draw ``count`` images into ``path`` -> (COCO captions dict, scenes dict) of the split."""
    images, annotations, scenes = [], [], []
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w") as zf:
        for index in tqdm(range(count), desc=f"drawing {split}", unit="img", mininterval=1.0, leave=False):
            picture, captions, scene = make_example(seed, split, index, image_size)
            ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise CapstoneError(f"{path}: cv2 could not encode image {index} as JPEG")
            file_name = image_file_name(split, index)
            zf.writestr(_zip_info(f"{split}/{file_name}", compress=False), jpeg.tobytes())
            image_id = SPLIT_IMAGE_ID_OFFSETS[split] + index + 1
            images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size})
            for number, caption in enumerate(captions):
                annotation_id = image_id * CAPTIONS_PER_IMAGE + number  # unique over all splits
                annotations.append({"id": annotation_id, "image_id": image_id, "caption": caption})
            scenes.append({"file_name": file_name, **scene})
    info = {"description": f"coloured shapes drawn by capstone.data.shapes_dataset (seed {seed})",
            "version": GENERATOR_VERSION}
    return {"info": info, "images": images, "annotations": annotations}, {"info": info, "scenes": scenes}


def _dataset_paths(out_dir, counts):
    image_zips = {split: os.path.join(out_dir, f"shapes_{split}.zip") for split in SPLITS}
    return ShapesDataset(out_dir, image_zips, os.path.join(out_dir, CAPTIONS_ZIP_NAME), dict(counts))


def _check_arguments(n_train, n_val, n_test, image_size, seed):
    """The arguments as a dict for the manifest; a bad one raises CapstoneError."""
    arguments = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "image_size": image_size, "seed": seed}
    for name, value in arguments.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise CapstoneError(f"make_shapes_dataset: {name} must be a whole number >= 0, got {value!r}")
    if n_train < 1:
        raise CapstoneError("make_shapes_dataset: n_train must be at least 1")
    if not 32 <= image_size <= 1024:
        raise CapstoneError(f"make_shapes_dataset: image_size must be 32..1024 pixels, got {image_size}")
    return {name: int(value) for name, value in arguments.items()}


def _is_complete(out_dir, arguments):
    """True when the manifest says these arguments were used and every file has its size."""
    try:
        with open(os.path.join(out_dir, MANIFEST_NAME), encoding="utf-8") as f:
            manifest = json.load(f)
        return (
            manifest["generator_version"] == GENERATOR_VERSION
            and manifest["arguments"] == arguments
            and all(os.path.getsize(os.path.join(out_dir, name)) == size
                    for name, size in manifest["files"].items())
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False  # missing, unreadable or partial: build it (again)


def make_shapes_dataset(out_dir, n_train=6000, n_val=300, n_test=300, image_size=224, seed=0):
    """Draw the shapes dataset into ``out_dir`` (or reuse a complete one) -> ShapesDataset.

    Writes shapes_{train,val,test}.zip, captions_shapes.zip and shapes_manifest.json (see
    the module docstring). Every file appears atomically; the manifest comes last, so an
    interrupted run is simply redone next time. Same arguments -> byte-identical files.
    """
    arguments = _check_arguments(n_train, n_val, n_test, image_size, seed)
    counts = {"train": arguments["n_train"], "val": arguments["n_val"], "test": arguments["n_test"]}
    dataset = _dataset_paths(os.fspath(out_dir), counts)
    if _is_complete(dataset.out_dir, arguments):
        return dataset
    manifest_path = os.path.join(dataset.out_dir, MANIFEST_NAME)
    try:
        os.makedirs(dataset.out_dir, exist_ok=True)
        if os.path.exists(manifest_path):
            os.remove(manifest_path)  # the old files are about to change under it
        captions_members = {}
        for split in SPLITS:
            coco, scenes = _write_split(dataset.image_zips[split], split, counts[split], image_size, seed)
            captions_members[dataset.captions_member(split)] = coco
            captions_members[f"annotations/scenes_{split}.json"] = scenes
        with atomic_open(dataset.captions_zip, "wb") as f, zipfile.ZipFile(f, "w") as zf:
            for member, content in captions_members.items():
                data = json.dumps(content, indent=1, ensure_ascii=False).encode("utf-8")
                zf.writestr(_zip_info(member, compress=True), data)
    except OSError as error:
        raise CapstoneError(f"{dataset.out_dir}: cannot write the shapes dataset ({error})") from None
    files = [*dataset.image_zips.values(), dataset.captions_zip]
    write_json(manifest_path, {
        "generator_version": GENERATOR_VERSION,
        "arguments": arguments,
        "files": {os.path.basename(path): os.path.getsize(path) for path in files},
    })
    return dataset


def make_shapes_preset(out_dir, preset="default", image_size=224, seed=0):
    """``make_shapes_dataset`` with the image counts of a named preset ("default" or "quick")."""
    if preset not in PRESETS:
        raise CapstoneError(f"shapes dataset preset '{preset}': unknown, expected one of {sorted(PRESETS)}")
    return make_shapes_dataset(out_dir, image_size=image_size, seed=seed, **PRESETS[preset])
