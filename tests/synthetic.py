"""A captioning problem small enough to learn in seconds: the caption is a function of the embedding.

Each image belongs to one of a few scenes; its embedding is the scene's random prototype plus
noise, and its captions are a few phrasings of the scene's colour and shape. A decoder that
learns anything at all must caption held-out images with their own scene's words.
"""

import numpy as np

COLOURS = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square", "triangle"]


def scene_captions(colour, shape):
    return [f"a {colour} {shape}", f"one {colour} {shape} here", f"the {shape} is {colour}",
            f"a {colour} {shape} on the table", f"there is a {colour} {shape}"]


def make_problem(n_train=300, n_val=60, embed_size=32, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    scenes = [(c, s) for c in COLOURS for s in SHAPES]
    prototypes = rng.normal(size=(len(scenes), embed_size)).astype(np.float32)

    def split(n):
        labels = rng.integers(0, len(scenes), n)
        embeds = prototypes[labels] + noise * rng.normal(size=(n, embed_size)).astype(np.float32)
        captions = [scene_captions(*scenes[label]) for label in labels]
        return embeds.astype(np.float32), captions, [scenes[label] for label in labels]

    return split(n_train), split(n_val)
