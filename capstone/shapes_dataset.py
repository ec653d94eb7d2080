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

Everything comes from the seed: the same seed gives byte-identical files. Image ``i`` of a
split depends only on (seed, split, i), so a bigger dataset starts with the smaller one.
"""

import dataclasses
import json
import os
import zipfile

import cv2
import numpy as np

from capstone.atomic import atomic_open, write_json
from capstone.errors import CapstoneError

# Bump when the drawing or the grammar changes: old datasets on disk are then rebuilt.
GENERATOR_VERSION = 1

# Named sizes. "default" fits the ~10 minute demo on 2 CPU cores (embedding runs at about
# 30-60 images/s); "quick" is for CI.
PRESETS = {
    "default": {"n_train": 1500, "n_val": 200, "n_test": 200},
    "quick": {"n_train": 300, "n_val": 60, "n_test": 60},
}
SPLITS = ("train", "val", "test")
SPLIT_SEED_CODES = {"train": 0, "val": 1, "test": 2}  # mixed into the seed of every image
SPLIT_IMAGE_ID_OFFSETS = {"train": 0, "val": 1_000_000, "test": 2_000_000}  # COCO image ids
CAPTIONS_PER_IMAGE = 5
JPEG_QUALITY = 90
MANIFEST_NAME = "shapes_manifest.json"
CAPTIONS_ZIP_NAME = "captions_shapes.zip"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates keep the zips byte-identical

# Shape colours in RGB; saturated, so none can be mistaken for the grey backgrounds.
COLOURS = {
    "red": (215, 35, 35),
    "green": (40, 165, 60),
    "blue": (40, 85, 220),
    "yellow": (240, 215, 40),
    "purple": (140, 55, 185),
    "orange": (245, 135, 25),
}
COLOUR_JITTER = 12  # +- per RGB channel, so that not every "red" is the same red
SHAPES = ("circle", "square", "triangle", "star", "diamond")
# Radius (half the width) as a fraction of the image side; the two classes never meet.
SIZE_RADII = {"small": (0.06, 0.085), "big": (0.15, 0.19)}
SIZE_WORDS = {"small": ("small", "little"), "big": ("big", "large")}
BACKGROUNDS = ("plain", "noisy", "shaded", "striped")
BACKGROUND_WORDS = {
    "plain": ("grey", "plain"), "noisy": ("noisy",), "shaded": ("shaded",), "striped": ("striped",),
}
SHAPE_COUNT_PROBS = (0.35, 0.40, 0.25)  # 1, 2 or 3 shapes
TWIN_PROB = 0.3  # chance that two shapes share colour and kind ("two red circles")
EDGE_MARGIN = 0.02  # shapes keep this far (fraction of the side) from the image border
GAP = 0.03  # ... and at least this far apart along the axis that separates them


# ---------------------------------------------------------------------------------------
# Scenes: what is in a picture, as plain dicts (they are saved as JSON next to the captions).


def _pick(rng, options):
    """One element of a list/tuple (a python object, not a numpy scalar)."""
    return options[int(rng.integers(len(options)))]


def _separated(a, b):
    """True when shapes a and b are apart along the axis that separates them most.

    Then "a left of b" (or above/below) is plainly true, not a matter of opinion.
    """
    dx, dy = b["x"] - a["x"], b["y"] - a["y"]
    needed = a["radius"] + b["radius"] + GAP
    return abs(dx) >= needed if abs(dx) >= abs(dy) else abs(dy) >= needed


def _place(rng, shapes, kind, colour, size):
    """A new shape dict placed apart from ``shapes``, or None when there is no room."""
    radius = float(rng.uniform(*SIZE_RADII[size]))
    low, high = radius + EDGE_MARGIN, 1.0 - radius - EDGE_MARGIN
    for _ in range(100):
        shape = {
            "kind": kind, "colour": colour, "size": size, "radius": round(radius, 4),
            "x": round(float(rng.uniform(low, high)), 4), "y": round(float(rng.uniform(low, high)), 4),
            "angle": round(float(rng.uniform(0, 360)), 1),
        }
        if all(_separated(shape, other) for other in shapes):
            return shape
    return None


def make_scene(rng):
    """A random scene: {"background": name, "shapes": [{kind, colour, size, radius, x, y, angle}]}.

    x, y (the shape's centre) and radius are fractions of the image side; y grows downwards.
    """
    n_shapes = 1 + int(rng.choice(len(SHAPE_COUNT_PROBS), p=SHAPE_COUNT_PROBS))
    shapes = []
    for i in range(n_shapes):
        if i > 0 and rng.random() < TWIN_PROB:
            kind, colour = shapes[-1]["kind"], shapes[-1]["colour"]  # "two red circles"
        else:
            kind, colour = _pick(rng, SHAPES), _pick(rng, list(COLOURS))
        # A big shape that does not fit becomes a small one; a small one that does not fit
        # is left out (rare), so the captions still match what is drawn.
        for size in dict.fromkeys([_pick(rng, list(SIZE_RADII)), "small"]):
            shape = _place(rng, shapes, kind, colour, size)
            if shape is not None:
                shapes.append(shape)
                break
    return {"background": _pick(rng, BACKGROUNDS), "shapes": shapes}


# ---------------------------------------------------------------------------------------
# Drawing: scene -> BGR uint8 picture, anti-aliased, with a little photo-like noise.

SUBPIXEL_BITS = 4  # cv2 draws with coordinates * 16 for smooth edges


def _draw_background(rng, kind, size):
    """[size, size, 3] float32 grey-ish texture."""
    grey = float(rng.uniform(90, 200))
    tint = rng.uniform(-6, 6, size=3)  # barely coloured, so it never looks like a shape colour
    if kind == "plain":
        picture = np.full((size, size, 3), grey, np.float32)
    elif kind == "noisy":
        noise = rng.standard_normal((size, size), dtype=np.float32) * float(rng.uniform(18, 30))
        picture = grey + cv2.GaussianBlur(noise, (3, 3), 0)[..., None]  # [size, size, 1]
    elif kind == "shaded":
        dark, light = float(rng.uniform(50, 100)), float(rng.uniform(160, 225))
        angle = float(rng.uniform(0, 2 * np.pi))
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
        ramp = (xs - 0.5) * np.cos(angle) + (ys - 0.5) * np.sin(angle)  # [-0.71, 0.71]
        picture = (dark + (light - dark) * (ramp + 0.71) / 1.42)[..., None].repeat(3, axis=2)
    else:  # striped
        other = grey + _pick(rng, (-1, 1)) * float(rng.uniform(30, 55))
        width = float(rng.uniform(0.04, 0.1)) * size
        angle = _pick(rng, (0.0, 0.25, 0.5, 0.75)) * np.pi
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        band = np.floor((xs * np.cos(angle) + ys * np.sin(angle)) / width) % 2  # 0/1 stripes
        picture = np.where(band[..., None] > 0, other, grey).astype(np.float32).repeat(3, axis=2)
    return np.clip(picture + tint, 0, 255)


def _outline(shape, size):
    """Polygon corners [K, 2] in pixels for the shapes that are polygons.

    No corner reaches further than ``radius`` from the centre along x or along y, so shapes
    that ``_separated`` placed apart never touch and never leave the picture.
    """
    cx, cy, r = shape["x"] * size, shape["y"] * size, shape["radius"] * size
    kind = shape["kind"]
    if kind == "square":  # nearly upright (+-10 degrees): a tilted square looks like a diamond
        # half-diagonal 1.2 r: a corner reaches at most 1.2 r cos(35 deg) = 0.98 r along x or y
        turn, radii, n = np.deg2rad(45 + (shape["angle"] % 20 - 10)), [r * 1.2], 4
    elif kind == "diamond":
        turn, radii, n = np.deg2rad(shape["angle"] % 20 - 10), [r], 4
    elif kind == "triangle":  # pointing up, give or take 15 degrees
        turn, radii, n = np.deg2rad(-90 + (shape["angle"] % 30 - 15)), [r], 3
    else:  # star: 5 outer and 5 inner corners
        turn, radii, n = np.deg2rad(shape["angle"]), [r, r * 0.5], 10
    angles = turn + np.arange(n) * 2 * np.pi / n
    lengths = np.array([radii[i % len(radii)] for i in range(n)])  # [K]
    return np.stack([cx + lengths * np.cos(angles), cy + lengths * np.sin(angles)], axis=1)


def render_scene(scene, size, rng):
    """Scene dict -> [size, size, 3] uint8 BGR picture (cv2's channel order)."""
    # cv2 anti-aliases only on 8-bit pictures, so shapes are drawn on a uint8 background.
    picture = np.round(_draw_background(rng, scene["background"], size)).astype(np.uint8)
    scale = 1 << SUBPIXEL_BITS
    for shape in scene["shapes"]:
        rgb = np.array(COLOURS[shape["colour"]]) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3)
        bgr = tuple(int(c) for c in np.clip(rgb, 0, 255)[::-1])
        if shape["kind"] == "circle":
            centre = (int(round(shape["x"] * size * scale)), int(round(shape["y"] * size * scale)))
            radius = int(round(shape["radius"] * size * scale))
            cv2.circle(picture, centre, radius, bgr, -1, cv2.LINE_AA, SUBPIXEL_BITS)
        else:
            corners = np.round(_outline(shape, size) * scale).astype(np.int32)  # [K, 2]
            cv2.fillPoly(picture, [corners], bgr, cv2.LINE_AA, SUBPIXEL_BITS)
    # A slight blur and sensor noise, so the pictures are not perfectly flat like clip art.
    blurred = cv2.GaussianBlur(picture.astype(np.float32), (3, 3), 0.6)
    noisy = blurred + rng.standard_normal(blurred.shape, dtype=np.float32) * 3.0
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# Captions: many true sentences about a scene; 5 different ones are kept.

PLURALS = {kind: kind + "s" for kind in SHAPES}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
RELATION_WORDS = {
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below", "under"),
}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


def _with_article(phrase):
    """"orange star" -> "an orange star"; "red circle" -> "a red circle"."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(phrases):
    """["x"] -> "x"; ["x", "y"] -> "x and y"; ["x", "y", "z"] -> "x, y and z"."""
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _relation(a, b):
    """Where shape a is, seen from shape b: "left", "right", "above" or "below".

    Scenes only hold shapes that are clearly apart along the dominant axis (``_separated``),
    so the answer is unambiguous.
    """
    dx, dy = a["x"] - b["x"], a["y"] - b["y"]
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def _regions(shape):
    """True phrases for where a shape is: ["in the top left corner", "in the corner", "on the left", ...]."""
    x, y = shape["x"], shape["y"]
    side = "left" if x < 0.35 else "right" if x > 0.65 else None
    level = "top" if y < 0.35 else "bottom" if y > 0.65 else None
    phrases = []
    if min(x, 1 - x) < 0.3 and min(y, 1 - y) < 0.3:
        corner = f"{'top' if y < 0.5 else 'bottom'} {'left' if x < 0.5 else 'right'} corner"
        phrases += [f"in the {corner}", "in the corner"]
    if side:
        phrases.append(f"on the {side}")
    if level:
        phrases.append(f"at the {level}")
    if abs(x - 0.5) < 0.12 and abs(y - 0.5) < 0.12:
        phrases.append("in the middle")
    return phrases


def _shape_phrase(rng, shape):
    """"a small red circle" or "a red circle": the size word comes half of the time."""
    words = [shape["colour"], shape["kind"]]
    if rng.random() < 0.5:
        words.insert(0, _pick(rng, SIZE_WORDS[shape["size"]]))
    return _with_article(" ".join(words))


def _group_phrase(rng, group):
    """Shapes of one colour and kind: "a red circle", "two red circles", "two small red circles"."""
    if len(group) == 1:
        return _shape_phrase(rng, group[0])
    words = [NUMBER_WORDS[len(group)], group[0]["colour"], PLURALS[group[0]["kind"]]]
    sizes = {shape["size"] for shape in group}
    if len(sizes) == 1 and rng.random() < 0.4:
        words.insert(1, _pick(rng, SIZE_WORDS[sizes.pop()]))
    return " ".join(words)


def _background(rng, background):
    """"striped background", "grey background", ... for a scene's background name."""
    return _pick(rng, BACKGROUND_WORDS[background]) + " background"


def _single_captions(rng, shape, background):
    """Sentences about a picture with one shape."""
    colour_kind = f"{shape['colour']} {shape['kind']}"
    sentences = [
        _shape_phrase(rng, shape),
        f"{_shape_phrase(rng, shape)} on a {_background(rng, background)}",
        f"one {colour_kind}",
        f"a single {colour_kind} on a {_background(rng, background)}",
        f"a picture of {_shape_phrase(rng, shape)}",
        f"an image of {_shape_phrase(rng, shape)}",
        f"there is {_shape_phrase(rng, shape)} on a {_background(rng, background)}",
        f"{_with_article(_pick(rng, SIZE_WORDS[shape['size']]) + ' ' + colour_kind)}",
    ]
    for region in _regions(shape):
        sentences.append(f"{_shape_phrase(rng, shape)} {region}")
        sentences.append(f"there is {_shape_phrase(rng, shape)} {region}")
    return sentences


def _pair_captions(rng, a, b, background):
    """Sentences about two shapes that differ in colour or kind."""
    if rng.random() < 0.5:
        a, b = b, a
    where = _relation(a, b)  # a is left of / right of / above / below b

    def relation():  # a fresh wording at every use
        return _pick(rng, RELATION_WORDS[where])

    sentences = [
        f"{_shape_phrase(rng, a)} {relation()} {_shape_phrase(rng, b)}",
        f"{_shape_phrase(rng, b)} {_pick(rng, RELATION_WORDS[OPPOSITE[where]])} {_shape_phrase(rng, a)}",
        f"there is {_shape_phrase(rng, a)} {relation()} {_shape_phrase(rng, b)}",
        f"a picture of {_shape_phrase(rng, a)} {relation()} {_shape_phrase(rng, b)}",
        f"{_shape_phrase(rng, a)} and {_shape_phrase(rng, b)}",
        f"{_shape_phrase(rng, b)} and {_shape_phrase(rng, a)} on a {_background(rng, background)}",
        f"two shapes, {_shape_phrase(rng, a)} and {_shape_phrase(rng, b)}",
    ]
    if a["kind"] == b["kind"]:
        sentences.append(f"two {PLURALS[a['kind']]}, one {a['colour']} and one {b['colour']}")
    if a["colour"] == b["colour"]:
        kinds = f"{_with_article(a['kind'])} and {_with_article(b['kind'])}"
        sentences.append(f"two {a['colour']} shapes, {kinds}")
    return sentences


def _group_captions(rng, shapes, groups, background):
    """Sentences about twins ("two red circles") or about three shapes."""

    def listing():  # the groups in a random order, each worded afresh
        return _join([_group_phrase(rng, groups[i]) for i in rng.permutation(len(groups))])

    count = NUMBER_WORDS[len(shapes)]
    sentences = [
        listing(),
        f"{listing()} on a {_background(rng, background)}",
        f"a picture of {listing()}",
        f"{listing()} on a {_background(rng, background)}",
    ]
    if len(groups) > 1:  # not for twins: "two shapes, two green triangles" sounds odd
        sentences += [f"{count} shapes, {listing()}", f"there are {count} shapes: {listing()}"]
    colours = list(dict.fromkeys(shape["colour"] for shape in shapes))
    if len(colours) == 1:
        sentences.append(f"{count} {colours[0]} shapes on a {_background(rng, background)}")
    if len(groups) == 1:  # twins or triplets: one colour, one kind
        sentences += [f"there are {listing()}", f"an image of {listing()}"]
    if len(groups) == 1 and len(shapes) == 2:  # twins
        a, b = shapes
        twin = f"{a['colour']} {a['kind']}"
        sentences += [
            f"{_with_article(twin)} {_pick(rng, RELATION_WORDS[_relation(a, b)])} another {twin}",
            f"a pair of {a['colour']} {PLURALS[a['kind']]}",
            f"two {a['colour']} {PLURALS[a['kind']]} "
            + ("side by side" if _relation(a, b) in ("left", "right") else "one above the other"),
        ]
    return sentences


def make_captions(rng, scene):
    """``CAPTIONS_PER_IMAGE`` different true captions of a scene, in human style.

    Every caption names the colour of every shape; about half start with a capital letter
    and some end with a full stop, as people type them.
    """
    shapes, background = scene["shapes"], scene["background"]
    groups = {}
    for shape in shapes:
        groups.setdefault((shape["colour"], shape["kind"]), []).append(shape)
    groups = list(groups.values())
    if len(shapes) == 1:
        grammar, arguments = _single_captions, (shapes[0], background)
    elif len(shapes) == 2 and len(groups) == 2:
        grammar, arguments = _pair_captions, (shapes[0], shapes[1], background)
    else:
        grammar, arguments = _group_captions, (shapes, groups, background)
    sentences = list(dict.fromkeys(grammar(rng, *arguments)))  # distinct, in order
    if len(sentences) < CAPTIONS_PER_IMAGE:  # a bug in the grammar, not in anyone's input
        raise RuntimeError(f"shapes grammar made only {len(sentences)} different captions for {scene}")
    chosen = [sentences[i] for i in rng.permutation(len(sentences))[:CAPTIONS_PER_IMAGE]]
    styled = []
    for sentence in chosen:
        if rng.random() < 0.5:
            sentence = sentence[0].upper() + sentence[1:]
        if rng.random() < 0.3:
            sentence += "."
        styled.append(sentence)
    return styled


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
        for index in range(count):
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
    info = {"description": f"coloured shapes drawn by capstone.shapes_dataset (seed {seed})",
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


def make_shapes_dataset(out_dir, n_train=1500, n_val=200, n_test=200, image_size=224, seed=0):
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
