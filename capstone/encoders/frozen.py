"""Freezing a Keras encoder into a v1 graph.

The captioning graph is ``tf.compat.v1`` code, while Keras 3 models only run eagerly. So the
encoder is *frozen*: traced once into a GraphDef whose variables are constants and whose input
is raw pixels, then imported into whatever v1 graph needs it (``frozen_encoder`` +
``import_encoder``). Frozen GraphDefs are cached on disk so the second run skips Keras entirely.
"""

import dataclasses
import hashlib
import os

import keras

from google.protobuf.message import DecodeError
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from capstone.encoders.cnn import ENCODERS, _eager_context, _is_url, _weights_source, encoder_spec, get_cnn_encoder
from capstone.support.atomic import atomic_open
from capstone.errors import CapstoneError

INPUT_NODE = "images"  # frozen graph input: float32 RGB pixels in [0, 255], [None, S, S, 3]
OUTPUT_NODE = "embedding"  # frozen graph output: pooled embedding, [None, D]
FEATURES_NODE = "features"  # frozen graph output: the last feature map before pooling, [None, G, G, D]
CACHE_FORMAT = "v2"  # part of cache file names; bump it when freezing changes (v2: + features)


@dataclasses.dataclass(frozen=True)
class FrozenEncoder:
    graph_def: tf.compat.v1.GraphDef  # constants only; raw pixels in, embedding out
    input_name: str  # "images:0", float32 [None, S, S, 3], RGB in [0, 255]
    output_name: str  # "embedding:0", float32 [None, D]
    image_size: int  # S
    embed_size: int  # D
    name: str  # e.g. "inception_v3"
    features_name: str = None  # "features:0", float32 [None, G, G, D], where the model pools one


def freeze_encoder(model, image_size, preprocess_for_model, name="custom"):
    """Trace ``preprocess_for_model`` + ``model`` into a GraphDef with the weights as constants.

    Input tensor "images:0": raw float32 RGB pixels in [0, 255], [None, image_size, image_size, 3].
    Output tensor "embedding:0": the model's output, [None, D]; and, when the model ends with
    global average pooling, "features:0": the feature map it pools, [None, G, G, D] (what an
    attention decoder looks at). Returns a FrozenEncoder.
    """
    with _eager_context():
        pixels = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=INPUT_NODE)
        pools = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
        both = keras.Model(model.input, [model.output, pools[-1].input]) if pools else None

        @tf.function(input_signature=[pixels])
        def encode(images):
            if both is None:
                return [tf.identity(model(preprocess_for_model(images), training=False), name=OUTPUT_NODE)]
            embedding, features = both(preprocess_for_model(images), training=False)  # [None, D], [None, G, G, D]
            return [tf.identity(embedding, name=OUTPUT_NODE), tf.identity(features, name=FEATURES_NODE)]

        frozen_function = convert_variables_to_constants_v2(encode.get_concrete_function())
        graph_def = frozen_function.graph.as_graph_def()
    embed_size = int(frozen_function.outputs[0].shape[-1])
    return FrozenEncoder(graph_def, INPUT_NODE + ":0", OUTPUT_NODE + ":0", image_size, embed_size, name,
                         FEATURES_NODE + ":0" if pools else None)


def _cache_file(name, weights, cache_dir):
    """Cache path of the frozen encoder, or None for random weights (nothing worth keeping)."""
    weights = _weights_source(weights)
    if weights is None:
        return None
    if weights == "imagenet":
        tag = "imagenet"
    else:  # a URL or file: hash it, so that other weights get another cache entry
        source = weights
        if not _is_url(weights) and os.path.exists(weights):  # a replaced file is a new entry too
            status = os.stat(weights)
            source = f"{os.path.abspath(weights)}|{status.st_size}|{status.st_mtime_ns}"
        tag = hashlib.sha1(source.encode()).hexdigest()[:12]
    if cache_dir is None:
        default_root = os.path.join(os.path.expanduser("~"), ".cache", "capstone")
        cache_root = os.environ.get("CAPSTONE_CACHE") or default_root
        cache_dir = os.path.join(cache_root, "encoders")
    return os.path.join(cache_dir, f"{name}-{tag}-{CACHE_FORMAT}.pb")


def _read_cached(path, name):
    """The FrozenEncoder stored at ``path``, or None when it is absent or unreadable."""
    if path is None or not os.path.exists(path):
        return None
    graph_def = tf.compat.v1.GraphDef()
    try:
        with open(path, "rb") as file:
            graph_def.ParseFromString(file.read())
    except (OSError, DecodeError):  # a corrupt cache file is rebuilt, not an error
        return None
    if not {INPUT_NODE, OUTPUT_NODE, FEATURES_NODE} <= {node.name for node in graph_def.node}:
        return None
    spec = ENCODERS[name]
    return FrozenEncoder(graph_def, INPUT_NODE + ":0", OUTPUT_NODE + ":0", spec.image_size, spec.embed_size, name,
                         FEATURES_NODE + ":0")


def frozen_encoder(name, weights="imagenet", cache_dir=None):
    """FrozenEncoder for ENCODERS[name], read from the disk cache when it is there.

    Cache: ``cache_dir`` or ``$CAPSTONE_CACHE/encoders`` (default ``~/.cache/capstone/encoders``),
    file ``<name>-<weights tag>-v2.pb``. weights=None (random init) is never cached.
    """
    spec = encoder_spec(name)
    path = _cache_file(name, weights, cache_dir)
    cached = _read_cached(path, name)
    if cached is not None:
        return cached
    model, preprocess_for_model = get_cnn_encoder(name, weights)
    frozen = freeze_encoder(model, spec.image_size, preprocess_for_model, name)
    if path is not None:
        with atomic_open(path) as file:
            file.write(frozen.graph_def.SerializeToString())
    return frozen


def import_encoder(frozen, input_images, spatial=False):
    """Import the frozen encoder into the current v1 graph, fed by ``input_images``.

    input_images: float32 RGB pixels in [0, 255], [None, S, S, 3] (S = frozen.image_size).
    Returns the embedding tensor [None, D], or with ``spatial`` the feature map [None, G, G, D];
    the imported ops live under the name scope "encoder".
    """
    if tf.executing_eagerly():
        raise CapstoneError(
            "import_encoder: call it inside `with tf.Graph().as_default():` (a tf.compat.v1 graph)"
        )
    expected = [None, frozen.image_size, frozen.image_size, 3]
    if input_images.dtype != tf.float32 or not input_images.shape.is_compatible_with(expected):
        raise CapstoneError(
            f"import_encoder: input images are {input_images.dtype.name} {input_images.shape}; "
            f"expected float32 {expected} for {frozen.name}"
        )
    if spatial and frozen.features_name is None:
        raise CapstoneError(f"import_encoder: {frozen.name} has no feature map to attend to (it does not end "
                            f"with global average pooling)")
    (output,) = tf.compat.v1.import_graph_def(
        frozen.graph_def,
        input_map={frozen.input_name: input_images},
        return_elements=[frozen.features_name if spatial else frozen.output_name],
        name="encoder",
    )
    return output  # [None, D], or [None, G, G, D]
