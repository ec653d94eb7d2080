"""A tiny captioning model that takes real image files, for the caption-service tests.

Pictures: a coloured background (the scene's colour) with a white block whose place is the
scene's "shape" (circle = top left, square = top right, triangle = bottom). The encoder is a
hand-built frozen GraphDef: 8 x 8 average pooling of a 16 x 16 image -> 12 numbers -> a fixed
random projection to 32 (so it stands in for a CNN in milliseconds). The decoder is trained on
those embeddings with the synthetic scene captions; one training (~10 s) is shared by every
test module in the process. ``running_server`` serves an app on 127.0.0.1 for real HTTP clients.
"""

import atexit
import contextlib
import functools
import os
import shutil
import tempfile
import threading

import cv2
import numpy as np
import tensorflow as tf
from werkzeug.serving import make_server

from capstone.support import run_dir as runs
from capstone.config import ModelConfig, TrainingConfig
from capstone.encoders import FrozenEncoder
from capstone.final_model import FinalModel
from capstone.encoders.images import image_for_model
from capstone.training import train
from synthetic import COLOURS, SHAPES, scene_captions

IMAGE_SIZE = 16  # the tiny encoder's input side
EMBED_SIZE = 32
BACKGROUNDS = {"red": (200, 30, 30), "green": (30, 170, 40), "blue": (30, 40, 200), "yellow": (220, 210, 40)}
SCENES = [(colour, shape) for colour in COLOURS for shape in SHAPES]


def tiny_encoder():
    """FrozenEncoder: pixels [N, 16, 16, 3] in 0..255 -> [N, 32], like a (very) small frozen CNN."""
    projection = np.random.default_rng(7).normal(size=(12, EMBED_SIZE)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, IMAGE_SIZE, IMAGE_SIZE, 3], name="images")
        pooled = tf.nn.avg_pool2d(images / 255.0, ksize=8, strides=8, padding="VALID")  # [N, 2, 2, 3]
        features = (tf.reshape(pooled, [-1, 12]) - 0.5) * 4.0                         # [N, 12]
        tf.identity(tf.matmul(features, tf.constant(projection)), name="embedding")    # [N, 32]
    return FrozenEncoder(graph.as_graph_def(), "images:0", "embedding:0", IMAGE_SIZE, EMBED_SIZE, "tiny_pool")


def scene_picture(colour, shape, size=64, rng=None):
    """uint8 RGB [size, size, 3] of one scene, with a little noise."""
    rng = rng if rng is not None else np.random.default_rng(0)
    picture = np.empty((size, size, 3), np.float32)
    picture[:] = BACKGROUNDS[colour]
    half = size // 2
    block = {"circle": (slice(0, half), slice(0, half)), "square": (slice(0, half), slice(half, size)),
             "triangle": (slice(half, size), slice(0, size))}[shape]
    picture[block] = 250
    picture += rng.normal(scale=8, size=picture.shape)
    return np.clip(picture, 0, 255).astype(np.uint8)


def encode_file(picture, extension=".png"):
    """uint8 RGB picture -> bytes of an image file."""
    ok, data = cv2.imencode(extension, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def embed_pixels(encoder, pixels, batch_size=32):
    """[N, S, S, 3] pixels -> [N, D] embeddings through the frozen encoder, in its own graph."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(encoder.graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return np.concatenate([session.run(encoder.output_name, {encoder.input_name: pixels[i:i + batch_size]})
                               for i in range(0, len(pixels), batch_size)])


def embed_pictures(encoder, pictures):
    """Embeddings of pictures through the same path as the service: file bytes -> crop -> encoder."""
    return embed_pixels(encoder, np.stack([image_for_model(encode_file(p), IMAGE_SIZE) for p in pictures]))


@functools.lru_cache(maxsize=None)
def trained_run_dir():
    """Path of a run directory whose decoder captions scene pictures (trained once per process)."""
    path = tempfile.mkdtemp(prefix="capstone-serve-run-")
    atexit.register(shutil.rmtree, path, True)
    rng = np.random.default_rng(0)
    encoder = tiny_encoder()

    def split(n):
        labels = rng.integers(0, len(SCENES), n)
        pictures = [scene_picture(*SCENES[label], rng=rng) for label in labels]
        return embed_pictures(encoder, pictures), [scene_captions(*SCENES[label]) for label in labels]

    (train_e, train_c), (val_e, val_c) = split(300), split(60)
    model_config = ModelConfig(img_embed_size=EMBED_SIZE, img_embed_bottleneck=32, word_embed_size=32,
                               lstm_units=64, logit_bottleneck=32)
    training_config = TrainingConfig(batch_size=32, n_epochs=4, n_batches_per_epoch=100, n_validation_batches=5,
                                     min_count=1)
    train(path, train_e, train_c, val_e, val_c, model_config, training_config, progress=False, log=lambda _: None)
    return path


def load_model():
    """A fresh FinalModel of the shared run, with the tiny encoder in front."""
    return FinalModel(runs.load_run(trained_run_dir()), encoder=tiny_encoder())


def write_scene_folder(folder, scenes, extension=".png"):
    """One picture file per (colour, shape) scene, named colour_shape.ext; returns the names."""
    os.makedirs(folder, exist_ok=True)
    names = []
    for index, (colour, shape) in enumerate(scenes):
        name = f"{colour}_{shape}{extension}"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(encode_file(scene_picture(colour, shape, rng=np.random.default_rng(100 + index)), extension))
        names.append(name)
    return names


@contextlib.contextmanager
def running_server(app):
    """(host, port) of ``app`` served by werkzeug with a thread per request, in a background thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.host, server.port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
