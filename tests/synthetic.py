"""A captioning problem small enough to learn in seconds: the caption is a function of the embedding.

Each image belongs to one of a few scenes; its embedding is the scene's random prototype plus
noise, and its captions are a few phrasings of the scene's colour and shape. A decoder that
learns anything at all must caption held-out images with their own scene's words.
"""

import os

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


def untrained_run(path, vocab_size, config, seed=5):
    """A run directory holding a randomly initialised decoder (COCO-sized vocabularies in seconds)."""
    import tensorflow as tf

    from capstone.support import run_dir as runs
    from capstone.captions import PAD, SPECIAL_TOKENS
    from capstone.config import TrainingConfig
    from capstone.decoder import SCOPE, Decoder

    words = [f"w{i}" for i in range(vocab_size - len(SPECIAL_TOKENS))]
    vocab = {token: index for index, token in enumerate(list(SPECIAL_TOKENS) + words)}
    runs.save_run(runs.Run(str(path), vocab, config, TrainingConfig()))
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        if config.decoder == "attention":
            from capstone.attention import AttentionDecoder
            AttentionDecoder(vocab_size, vocab[PAD], config)
        else:
            Decoder(vocab_size, vocab[PAD], config)
        saver = tf.compat.v1.train.Saver(tf.compat.v1.global_variables(scope=SCOPE))
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, os.path.join(str(path), runs.CHECKPOINTS, "model"), global_step=0,
                       write_meta_graph=False)
    return str(path)
