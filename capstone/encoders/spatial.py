"""Spatial features for the attention decoder: the CNN's last feature map, one [G, G, D] grid per image.

    embeds, fns = embed_spatial("train2014_sample.zip", "efficientnet_lite0", "train")
    # -> train_img_features.npy: float16 [N, G, G, D], read with np.load(..., mmap_mode="r")

A grid is 49 (Lite0, 7 x 7) or 64 (InceptionV3, 8 x 8) times the size of a pooled embedding, so the
features are never held in memory: each batch goes straight into a ``.npy`` file opened as a memory
map (float16 halves the size: ~10 GB for Lite0 on the course's 83k COCO images). The pooled
embeddings (the course's pickles, unchanged) are the mean of each grid and come from the same run.
"""

import contextlib
import os

import numpy as np
import tensorflow as tf

from capstone.encoders.frozen import frozen_encoder, import_encoder
from capstone.encoders.views import split_views, views_path, with_views
from capstone.errors import CapstoneError
from capstone.support.precision import BFLOAT16, FLOAT32, check_precision
from capstone.support.tf_session import make_session
from utils import apply_model
from utils.image_files import ImageFiles

FEATURES_DTYPE = np.float16
COPY_ROWS = 256  # rows copied at a time when a file is cut to the images that decoded


def features_path(prefix):
    return f"{prefix}_img_features.npy"


class SpatialEncoderSession:
    """The frozen encoder in its own graph: pixels [B, S, S, 3] -> (pooled [B, D], grid [B, G, G, D]).
    precision "bfloat16": oneDNN's bfloat16 rewrite, as ``capstone.encoders.embed.EncoderSession``."""

    def __init__(self, frozen, precision=FLOAT32):
        self.graph = tf.Graph()
        with self.graph.as_default():
            size = frozen.image_size
            self.input_images = tf.compat.v1.placeholder(tf.float32, [None, size, size, 3], name="input_images")
            self.features = import_encoder(frozen, self.input_images, spatial=True)  # [B, G, G, D]
            self.embedding = tf.reduce_mean(self.features, axis=[1, 2])                # what the CNN pools
        self.graph.finalize()
        bfloat16 = check_precision(precision, "SpatialEncoderSession") == BFLOAT16
        self.session = make_session(self.graph, bfloat16_rewrite=bfloat16)

    def __call__(self, pixels):
        return self.session.run([self.embedding, self.features], {self.input_images: pixels})

    def close(self):
        self.session.close()


class FeatureFile:
    """Rows of features written in order into ``path`` + ".part", renamed to ``path`` when complete."""

    def __init__(self, path, rows, dtype=FEATURES_DTYPE):
        self.path, self.part, self.rows, self.written = path, path + ".part", rows, 0
        self.array, self.dtype = None, dtype

    def write(self, features):
        if self.array is None:  # the grid's shape is known with the first batch
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self.array = np.lib.format.open_memmap(self.part, mode="w+", dtype=self.dtype,
                                                   shape=(self.rows,) + features.shape[1:])
        self.array[self.written:self.written + len(features)] = features
        self.written += len(features)

    def finish(self):
        """Flush, cut to the rows written (files that did not decode leave none), rename into place."""
        self.array.flush()
        if self.written < self.rows:
            cut = np.lib.format.open_memmap(self.part + ".cut", mode="w+", dtype=self.dtype,
                                            shape=(self.written,) + self.array.shape[1:])
            for start in range(0, self.written, COPY_ROWS):
                cut[start:start + COPY_ROWS] = self.array[start:start + COPY_ROWS]
            cut.flush()
            del cut
            os.replace(self.part + ".cut", self.part)
        self.array = None
        os.replace(self.part, self.path)

    def discard(self):
        self.array = None
        for path in (self.part, self.part + ".cut"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def embed_spatial(source, encoder, prefix, weights="imagenet", batch_size=32, extensions=(".jpg", ".jpeg", ".png"),
                  show_progress=True, precision=FLOAT32, views=()):
    """Every image of a zip or folder -> PREFIX_img_features.npy; returns (pooled float32 [N, D], N names).

    views: names from ``capstone.encoders.views.VIEWS``; their pooled embeddings go into
    PREFIX_img_views.npy [N, V, D] and their grids into PREFIX_img_view_features.npy [N, V, G, G, D].
    """
    frozen = frozen_encoder(encoder, weights=weights)
    rows = len(ImageFiles(source, extensions).files)
    outs = [FeatureFile(features_path(prefix), rows)]
    if views:
        outs += [FeatureFile(views_path(prefix), rows, np.float32), FeatureFile(views_path(prefix, True), rows)]
    session = SpatialEncoderSession(frozen, precision)

    def encode(pixels):
        embedding, features = session(with_views(pixels, views))  # [(1 + V) B, D], [(1 + V) B, G, G, D]
        embedding, embedding_views = split_views(embedding, len(pixels))
        features, feature_views = split_views(features, len(pixels))
        outs[0].write(features)
        if views:
            outs[1].write(embedding_views)
            outs[2].write(feature_views)
        return embedding

    try:
        embeds, fns = apply_model(source, encode, lambda pixels: pixels, extensions=extensions,
                                  input_shape=(frozen.image_size, frozen.image_size), batch_size=batch_size,
                                  show_progress=show_progress)
        for out in outs:
            out.finish()
    except BaseException:
        for out in outs:
            out.discard()
        raise
    finally:
        session.close()
    return embeds, fns


def read_features(path, expected_count=None):
    """A features ``.npy`` as a read-only memory map [N, G, G, D], checked."""
    try:
        features = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise CapstoneError(f"{path}: no such features file; make it with 'embed --spatial'") from None
    except ValueError as error:
        raise CapstoneError(f"{path}: not a .npy array ({error})") from None
    if features.ndim != 4 or features.shape[1] != features.shape[2]:
        raise CapstoneError(f"{path}: expected spatial features [images, grid, grid, channels], got {features.shape}")
    if expected_count is not None and len(features) != expected_count:
        raise CapstoneError(f"{path} has {len(features)} images but its file names list has {expected_count}")
    return features


def write_rows(path, features, rows):
    """features[rows] -> a new features file at ``path`` (a split), copied a few rows at a time."""
    out, rows = FeatureFile(path, len(rows), features.dtype), np.sort(rows)
    try:
        for start in range(0, len(rows), COPY_ROWS):
            out.write(np.asarray(features[rows[start:start + COPY_ROWS]]))
        out.finish()
    except BaseException:
        out.discard()
        raise
