"""What a shapes picture holds, and how it is drawn.

A scene is a plain dict (saved as JSON beside the captions, so a test can check that the
captions are true of the picture); ``render_scene`` turns it into a BGR uint8 image:

    rng = np.random.default_rng(0)
    scene = make_scene(rng)            # {"background": "striped", "shapes": [{kind, colour, size, x, y, ...}]}
    picture = render_scene(scene, 224, rng)
"""

import cv2
import numpy as np

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
BACKGROUNDS = ("plain", "noisy", "shaded", "striped")
SHAPE_COUNT_PROBS = (0.35, 0.40, 0.25)  # 1, 2 or 3 shapes
TWIN_PROB = 0.3  # chance that two shapes share colour and kind ("two red circles")
EDGE_MARGIN = 0.02  # shapes keep this far (fraction of the side) from the image border
GAP = 0.03  # ... and at least this far apart along the axis that separates them


# ---------------------------------------------------------------------------------------
# Scenes: what is in a picture, as plain dicts (they are saved as JSON next to the captions).


def pick(rng, options):
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
            kind, colour = pick(rng, SHAPES), pick(rng, list(COLOURS))
        # A big shape that does not fit becomes a small one; a small one that does not fit
        # is left out (rare), so the captions still match what is drawn.
        for size in dict.fromkeys([pick(rng, list(SIZE_RADII)), "small"]):
            shape = _place(rng, shapes, kind, colour, size)
            if shape is not None:
                shapes.append(shape)
                break
    return {"background": pick(rng, BACKGROUNDS), "shapes": shapes}


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
        other = grey + pick(rng, (-1, 1)) * float(rng.uniform(30, 55))
        width = float(rng.uniform(0.04, 0.1)) * size
        angle = pick(rng, (0.0, 0.25, 0.5, 0.75)) * np.pi
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
