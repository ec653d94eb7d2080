"""Images -> embeddings with a frozen encoder, and the course's pair of pickles.

    embeds, fns = embed_images("train2014_sample.zip", "efficientnet_lite0")
    save_embeddings("train", embeds, fns)   # train_img_embeds.pickle + train_img_fns.pickle

The encoder runs as the same frozen GraphDef that the captioning graph imports, so embeddings
computed here and embeddings computed inside ``FinalModel`` are the same numbers.
"""

import contextlib
import os

import numpy as np
import tensorflow as tf

from capstone.encoders.frozen import frozen_encoder, import_encoder
from capstone.encoders.spatial import FeatureFile, read_features
from capstone.encoders.views import split_views, views_path, with_views
from capstone.errors import CapstoneError
from capstone.support.disk import writing
from capstone.support.precision import BFLOAT16, FLOAT32, check_precision
from capstone.support.tf_session import make_session
from utils import apply_model, read_pickle, save_pickle
from utils.image_files import ImageFiles

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class EncoderSession:
    """A frozen encoder in its own graph and session: ``encode(pixels [B, S, S, 3]) -> [B, D]``.

    precision "bfloat16": oneDNN rewrites the frozen graph's convolutions and matmuls to bfloat16.
    """

    def __init__(self, frozen, precision=FLOAT32):
        self.frozen = frozen
        self.graph = tf.Graph()
        with self.graph.as_default():
            size = frozen.image_size
            self.input_images = tf.compat.v1.placeholder(tf.float32, [None, size, size, 3], name="input_images")
            self.embedding = import_encoder(frozen, self.input_images)
        self.graph.finalize()
        bfloat16 = check_precision(precision, "EncoderSession") == BFLOAT16
        self.session = make_session(self.graph, bfloat16_rewrite=bfloat16)

    def __call__(self, pixels):
        return self.session.run(self.embedding, {self.input_images: pixels})

    def close(self):
        self.session.close()


def embed_images(source, encoder="efficientnet_lite0", weights="imagenet", batch_size=32,
                 extensions=IMAGE_EXTENSIONS, show_progress=True, precision=FLOAT32, views=(), prefix=None):
    """Every image of a zip or folder -> (float32 [N, D], N file names); precision: see ``EncoderSession``.

    views: names from ``capstone.encoders.views.VIEWS``; their embeddings go, row for row, into
    PREFIX_img_views.npy (float32 [N, V, D]).
    """
    frozen = frozen_encoder(encoder, weights=weights)
    session = EncoderSession(frozen, precision)
    out = FeatureFile(views_path(prefix), len(ImageFiles(source, extensions).files), np.float32) if views else None

    def encode(pixels):
        photos, photo_views = split_views(session(with_views(pixels, views)), len(pixels))  # [B, D], [B, V, D]
        if out is not None:
            out.write(photo_views)
        return photos

    try:
        # The frozen graph normalises pixels itself, so the preprocessing step here is the identity.
        result = apply_model(source, encode, lambda pixels: pixels, extensions=extensions,
                             input_shape=(frozen.image_size, frozen.image_size), batch_size=batch_size,
                             show_progress=show_progress)
        if out is not None:
            out.finish()
        return result
    except BaseException:
        if out is not None:
            out.discard()
        raise
    finally:
        session.close()


def embeddings_paths(prefix):
    return f"{prefix}_img_embeds.pickle", f"{prefix}_img_fns.pickle"


def save_embeddings(prefix, embeds, fns):
    """Write PREFIX_img_embeds.pickle and PREFIX_img_fns.pickle; both or neither."""
    embeds_fn, fns_fn = embeddings_paths(prefix)
    if len(embeds) != len(fns):
        raise CapstoneError(f"{prefix}: {len(embeds)} embeddings but {len(fns)} file names")
    then = "run the same command again"
    with writing(embeds_fn, then):
        save_pickle(np.asarray(embeds, dtype=np.float32), embeds_fn)
    try:
        with writing(fns_fn, then):
            save_pickle(list(fns), fns_fn)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(embeds_fn)  # no half pair left behind
        raise
    return embeds_fn, fns_fn


def read_embeddings(embeds_fn, fns_fn):
    """The course's pair of pickles -> (float32 [N, D], list of N file names), checked.

    A ``.npy`` embeddings file holds spatial features (``embed --spatial``): it comes back as a
    read-only memory map [N, G, G, D], so it never has to fit in memory.
    """
    spatial = str(embeds_fn).endswith(".npy")
    embeds = None if spatial else np.asarray(read_pickle(embeds_fn))
    fns = read_pickle(fns_fn)
    if not isinstance(fns, (list, tuple)) or not all(isinstance(fn, str) for fn in fns):
        raise CapstoneError(f"{fns_fn}: expected a list of file names")
    if spatial:
        return read_features(embeds_fn, len(fns)), list(fns)
    if embeds.ndim != 2 or not np.issubdtype(embeds.dtype, np.number):
        raise CapstoneError(f"{embeds_fn}: expected a numeric array [images, features], got shape {embeds.shape}")
    if len(embeds) != len(fns):
        raise CapstoneError(f"{embeds_fn} has {len(embeds)} embeddings but {fns_fn} has {len(fns)} file names; "
                            f"they must come from the same embedding run")
    return embeds.astype(np.float32, copy=False), list(fns)
