"""A captioning task where the caption depends on *where* something is.

Each image is a G x G grid of D-d features: every location carries a fixed code for its position
(as a CNN's features carry some of where they are), one random location also carries one of a few
object codes, the others a little noise. The caption names the object and its position. The mean
of the grid (the pooled embedding) keeps the object but loses where it was; attention can find it.
"""

import numpy as np

OBJECTS = ["cat", "dog", "bird"]
ROWS, COLUMNS = ["top", "middle", "bottom"], ["left", "centre", "right"]


def make_spatial_problem(n_train=600, n_val=150, grid=3, depth=24, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    positions = rng.normal(size=(grid * grid, depth)).astype(np.float32)
    objects = 3.0 * rng.normal(size=(len(OBJECTS), depth)).astype(np.float32)

    def split(n):
        kinds = rng.integers(0, len(OBJECTS), n)
        where = rng.integers(0, grid * grid, n)
        features = positions[None] + noise * rng.normal(size=(n, grid * grid, depth)).astype(np.float32)
        features[np.arange(n), where] += objects[kinds]
        captions = [[f"a {OBJECTS[k]} {ROWS[w // grid]} {COLUMNS[w % grid]}"] * 3 for k, w in zip(kinds, where)]
        return features.reshape(n, grid, grid, depth), captions, list(zip(kinds, where))

    return split(n_train), split(n_val)
