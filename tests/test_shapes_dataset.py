"""The generated shapes dataset (capstone.data.shapes_dataset): files, determinism, true captions."""

import io
import json
import os
import re
import zipfile

import cv2
import numpy as np
import pytest

from capstone.data import shapes_dataset as shapes
from capstone.data.shapes_scenes import COLOURS, SHAPES
from capstone.captions import split_sentence
from capstone.data.caption_files import captions_for_fns, load_captions
from capstone.errors import CapstoneError

SMALL = {"n_train": 8, "n_val": 3, "n_test": 2, "image_size": 128, "seed": 3}
FILES = ["captions_shapes.zip", "shapes_manifest.json", "shapes_test.zip", "shapes_train.zip", "shapes_val.zip"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small dataset made once for the tests that only read it."""
    return shapes.make_shapes_dataset(tmp_path_factory.mktemp("shapes") / "data", **SMALL)


def _scenes(dataset, split):
    with zipfile.ZipFile(dataset.captions_zip) as zf:
        return json.loads(zf.read(f"annotations/scenes_{split}.json"))["scenes"]


def _random_scenes(count, seed=0):
    """(scene, captions) pairs straight from the generator, without drawing."""
    result = []
    for index in range(count):
        rng = np.random.default_rng([seed, 0, index])
        scene = shapes.make_scene(rng)
        result.append((scene, shapes.make_captions(rng, scene)))
    return result


def test_files_and_counts_per_split(small):
    assert sorted(os.listdir(small.out_dir)) == FILES  # no temporary files left behind
    assert small.counts == {"train": 8, "val": 3, "test": 2}
    for split, count in small.counts.items():
        with zipfile.ZipFile(small.image_zips[split]) as zf:
            names = zf.namelist()
            assert names == [f"{split}/shapes_{split}_{i:06d}.jpg" for i in range(count)]
            picture = cv2.imdecode(np.frombuffer(zf.read(names[0]), np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape == (128, 128, 3)
    manifest = json.loads(open(os.path.join(small.out_dir, "shapes_manifest.json")).read())
    assert manifest["arguments"] == SMALL
    assert manifest["files"]["shapes_train.zip"] == os.path.getsize(small.image_zips["train"])


def test_captions_load_like_coco_for_the_zip_and_each_member(small):
    everything = load_captions(small.captions_zip)
    assert len(everything) == 8 + 3 + 2  # file names are unique over the splits
    for split, count in small.counts.items():
        fn_to_captions = load_captions(small.captions_source(split))
        assert list(fn_to_captions) == [f"shapes_{split}_{i:06d}.jpg" for i in range(count)]
        for captions in fn_to_captions.values():
            assert len(captions) == 5 and len(set(captions)) == 5
        with zipfile.ZipFile(small.image_zips[split]) as zf:
            members = zf.namelist()
        # The course looks captions up by zip member name; the basename is found.
        assert captions_for_fns(members, fn_to_captions) == list(fn_to_captions.values())


def test_same_seed_gives_identical_bytes_and_another_seed_other_images(small, tmp_path):
    again = shapes.make_shapes_dataset(tmp_path / "again", **SMALL)
    for name in FILES:
        with open(os.path.join(small.out_dir, name), "rb") as a, open(os.path.join(again.out_dir, name), "rb") as b:
            assert a.read() == b.read(), name
    other = shapes.make_shapes_dataset(tmp_path / "other", **dict(SMALL, seed=4))
    with zipfile.ZipFile(small.image_zips["train"]) as a, zipfile.ZipFile(other.image_zips["train"]) as b:
        differ = [a.read(name) != b.read(name) for name in a.namelist()]
    assert all(differ)


def test_drawn_pixels_have_the_colours_the_captions_name(small):
    checked = 0
    for split in shapes.SPLITS:
        fn_to_captions = load_captions(small.captions_source(split))
        with zipfile.ZipFile(small.image_zips[split]) as zf:
            for scene in _scenes(small, split):
                buf = np.frombuffer(zf.read(f"{split}/{scene['file_name']}"), np.uint8)
                rgb = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float64)
                drawn = set()
                for shape in scene["shapes"]:
                    x, y = round(shape["x"] * 128), round(shape["y"] * 128)
                    pixel = np.median(rgb[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3), axis=0)
                    nearest = min(COLOURS, key=lambda name: np.sum((pixel - COLOURS[name]) ** 2))
                    assert nearest == shape["colour"], (scene, pixel)
                    drawn.add(nearest)
                    checked += 1
                for caption in fn_to_captions[scene["file_name"]]:
                    assert set(split_sentence(caption)) & set(COLOURS) == drawn, caption
    assert checked >= 13


def test_captions_are_true_of_the_scene():
    left_right_checked = 0
    for scene, captions in _random_scenes(1500):
        kinds = {shape["kind"] for shape in scene["shapes"]}
        sizes = {shape["size"] for shape in scene["shapes"]}
        for caption in captions:
            words = split_sentence(caption)
            named_kinds = {word.rstrip("s") for word in words} & set(SHAPES)
            assert named_kinds <= kinds, (caption, scene)
            if {"small", "little"} & set(words):
                assert "small" in sizes, (caption, scene)
            if {"big", "large"} & set(words):
                assert "big" in sizes, (caption, scene)
            if "three" in words:
                assert len(scene["shapes"]) == 3, (caption, scene)
            if "two" in words:
                assert len(scene["shapes"]) >= 2, (caption, scene)
            corner = re.search(r"(top|bottom) (left|right) corner", caption)
            if corner:
                (shape,) = scene["shapes"]
                assert (shape["y"] < 0.5) == (corner[1] == "top") and (shape["x"] < 0.5) == (corner[2] == "left")
            # "<colour> <kind> [to the] left of a[n] [size] <colour> <kind>": check the geometry.
            relation = re.search(
                r"(\w+) (\w+) (?:to the )?(left|right) of an? (?:(?:small|little|big|large) )?(\w+) (\w+)", caption
            )
            if relation:
                a = next(s for s in scene["shapes"] if (s["colour"], s["kind"]) == relation.group(1, 2))
                b = next(s for s in scene["shapes"] if (s["colour"], s["kind"]) == relation.group(4, 5))
                assert (a["x"] < b["x"]) == (relation[3] == "left"), (caption, scene)
                left_right_checked += 1
    assert left_right_checked > 100


def test_vocabulary_size_is_in_the_intended_range():
    words = {word for _, captions in _random_scenes(800) for caption in captions for word in split_sentence(caption)}
    assert 30 <= len(words) <= 60, sorted(words)
    assert set(COLOURS) <= words and {"circle", "squares", "left", "background"} <= words


def test_complete_dataset_is_reused_and_a_damaged_one_rebuilt(tmp_path):
    arguments = dict(SMALL, n_train=3, n_val=1, n_test=1)
    first = shapes.make_shapes_dataset(tmp_path, **arguments)
    train_zip = first.image_zips["train"]
    stamp = os.stat(train_zip).st_mtime_ns
    shapes.make_shapes_dataset(tmp_path, **arguments)
    assert os.stat(train_zip).st_mtime_ns == stamp  # not written again

    original = open(train_zip, "rb").read()
    with open(train_zip, "r+b") as f:
        f.truncate(100)  # a damaged file has the wrong size
    shapes.make_shapes_dataset(tmp_path, **arguments)
    assert open(train_zip, "rb").read() == original

    bigger = shapes.make_shapes_dataset(tmp_path, **dict(arguments, n_train=4))
    with zipfile.ZipFile(bigger.image_zips["train"]) as zf:
        assert len(zf.namelist()) == 4
        # Image i depends only on (seed, split, i): the bigger set starts with the smaller.
        with zipfile.ZipFile(io.BytesIO(original)) as old:
            assert zf.read(old.namelist()[0]) == old.read(old.namelist()[0])


def test_presets_and_bad_arguments(tmp_path):
    assert shapes.PRESETS["default"] == {"n_train": 6000, "n_val": 300, "n_test": 300}
    assert shapes.PRESETS["quick"] == {"n_train": 300, "n_val": 60, "n_test": 60}
    with pytest.raises(CapstoneError, match="preset 'huge': unknown"):
        shapes.make_shapes_preset(tmp_path, "huge")
    with pytest.raises(CapstoneError, match="n_train must be at least 1"):
        shapes.make_shapes_dataset(tmp_path, n_train=0)
    with pytest.raises(CapstoneError, match="seed must be a whole number"):
        shapes.make_shapes_dataset(tmp_path, seed=-1)
    with pytest.raises(CapstoneError, match="image_size must be 32..1024"):
        shapes.make_shapes_dataset(tmp_path, image_size=8)
    assert os.listdir(tmp_path) == []  # nothing written for bad arguments
