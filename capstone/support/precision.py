"""Matmul precision: float32, or bfloat16 where the hardware multiplies it natively.

bfloat16 keeps float32's exponent and 8 bits of its mantissa, so a matmul on bfloat16 inputs
with float32 accumulation runs about twice as fast on CPUs with AVX512_BF16 or AMX and gives
numbers within ~0.4 % of float32's. Only the big matmuls change: variables, Adam's moments, the
loss, softmax and the LSTM's gates stay float32, and checkpoints are float32 either way.

``--precision auto`` (every command's default) picks bfloat16 when ``bfloat16_hardware()`` finds
it and the step at hand was measured faster in it (``FASTER_IN_BFLOAT16``), float32 otherwise.
Without the hardware TensorFlow *emulates* bfloat16, several times slower than float32, so
``--precision bfloat16`` there is an error (``resolve``), not a silent slowdown.

How a graph uses it: the builder calls ``set_graph_precision`` once, and the layers' matmuls go
through ``matmul``, which casts its inputs to bfloat16 and its result back to float32 only in a
bfloat16 graph. Frozen encoders (GraphDefs of constants) cannot be edited that way; for them a
session turns on oneDNN's automatic bfloat16 rewrite (``rewrite_to_bfloat16``).
"""

import os

import tensorflow as tf

from capstone.config import PRECISIONS
from capstone.errors import CapstoneError

FLOAT32, BFLOAT16 = PRECISIONS             # what a graph runs in, and what a run directory records
AUTO = "auto"
CHOICES = (AUTO, FLOAT32, BFLOAT16)        # what --precision accepts
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bfloat16 matmuls
DISABLE_VARIABLE = "CAPSTONE_NO_BFLOAT16"  # set to 1: act as if no hardware had bfloat16
_COLLECTION = "capstone_precision"         # where a graph keeps its precision


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (Linux's /proc/cpuinfo), an empty set where that file is absent."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as file:
            for line in file:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _gpu_with_bfloat16():
    """The name of a visible GPU that multiplies bfloat16 natively (compute capability >= 8.0), or None."""
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        if tuple(details.get("compute_capability", (0, 0))) >= (8, 0):
            return details.get("device_name", gpu.name)
    return None


def bfloat16_hardware():
    """Where bfloat16 matmuls run natively here: a short description ("CPU: amx_bf16"), or None."""
    if os.environ.get(DISABLE_VARIABLE, "") not in ("", "0"):
        return None
    found = sorted(cpu_flags() & set(BFLOAT16_CPU_FLAGS))
    if found:
        return "CPU: " + ", ".join(found)
    gpu = _gpu_with_bfloat16()
    return f"GPU: {gpu}" if gpu else None


# What ``--precision auto`` runs in bfloat16 on hardware that has it: the paths bench/precision.py measured
# faster there, side by side (2-core Xeon with AMX, bf16 / float32): training the course's decoder x1.5-1.7 and
# the attention decoder x0.88-1.20, median x1.10 (since the cross-entropy's softmax is oneDNN's), InceptionV3
# embedding x2.77-3.75.
# Slower in bfloat16, so float32 under auto: EfficientNet-Lite embedding x0.94 (depthwise convolutions), in-graph
# captioning x0.45 (the float32 refinement of the top logits costs more than the smaller product saves).
# --precision bfloat16 still asks for it anywhere.
FASTER_IN_BFLOAT16 = ("train:show_and_tell", "train:attention", "embed:inception_v3")


def resolve(requested, flag="--precision", path=None):
    """"auto", "float32" or "bfloat16" -> the precision to run in ("float32" or "bfloat16").

    auto: bfloat16 where ``bfloat16_hardware()`` finds it and ``path`` (what runs: "train:DECODER",
    "embed:ENCODER", "caption"; None: any) is one of ``FASTER_IN_BFLOAT16``, else float32. bfloat16
    without the hardware is a CapstoneError: emulated, it would be slower than float32, never faster.
    """
    if requested not in CHOICES:
        raise CapstoneError(f"{flag}: expected one of {', '.join(CHOICES)}, got {requested!r}")
    if requested == FLOAT32:
        return FLOAT32
    hardware = bfloat16_hardware()
    if requested == AUTO:
        return BFLOAT16 if hardware and (path is None or path in FASTER_IN_BFLOAT16) else FLOAT32
    if not hardware:
        flags = sorted(flag for flag in cpu_flags() if flag.startswith(("avx512", "amx")))
        raise CapstoneError(
            f"{flag} bfloat16: this machine has no native bfloat16 matmuls (no CPU flag "
            f"{' or '.join(BFLOAT16_CPU_FLAGS)}, no GPU of compute capability 8.0+; CPU flags found: "
            f"{' '.join(flags) or 'none'}); TensorFlow would emulate it, slower than float32. "
            f"Use {flag} float32 or auto")
    return BFLOAT16


def step_precisions(requested, steps):
    """{step: "float32" or "bfloat16"} for the steps of a pipeline ("embed:ENCODER", "train:DECODER",
    "caption"), each as its own command would resolve ``requested`` (``resolve``'s ``path``)."""
    return {step: resolve(requested, path=step) for step in steps}


def add_precision_argument(parser):
    """The --precision flag every command that runs a model has."""
    parser.add_argument("--precision", choices=CHOICES, default=AUTO,
                        help="matmuls in bfloat16 (float32 accumulation) or float32; auto (default): bfloat16 where "
                             "the CPU has AVX512_BF16 or AMX (or the GPU bfloat16) and the step was measured faster "
                             "in it (training either decoder, InceptionV3 embedding), float32 elsewhere")


def check_precision(precision, where):
    """A precision recorded in a file must be float32 or bfloat16."""
    if precision not in PRECISIONS:
        raise CapstoneError(f"{where}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def set_graph_precision(precision, graph=None):
    """Make the matmuls built from now on in ``graph`` (default: the default graph) run in ``precision``."""
    graph = graph or tf.compat.v1.get_default_graph()
    check_precision(precision, "set_graph_precision")
    graph.clear_collection(_COLLECTION)
    graph.add_to_collection(_COLLECTION, precision)


def graph_precision(graph=None):
    """The precision ``set_graph_precision`` gave ``graph`` (default: the default graph); float32 if none."""
    graph = graph or tf.compat.v1.get_default_graph()
    chosen = graph.get_collection(_COLLECTION)
    return chosen[-1] if chosen else FLOAT32


def for_matmul(x):
    """x as a matmul operand of the default graph: cast to bfloat16 in a bfloat16 graph (do it once,
    outside a loop, for a weight used at every step), unchanged otherwise."""
    if graph_precision() == BFLOAT16 and x.dtype == tf.float32:
        return tf.cast(x, tf.bfloat16)
    return x


def matmul(a, b, **kwargs):
    """``tf.matmul(a, b, **kwargs)`` as float32, computed in the default graph's precision.

    In a bfloat16 graph: bfloat16 operands (oneDNN accumulates in float32), result cast to float32.
    """
    if graph_precision() == FLOAT32:
        return tf.matmul(a, b, **kwargs)
    return tf.cast(tf.matmul(for_matmul(tf.convert_to_tensor(a)), for_matmul(tf.convert_to_tensor(b)), **kwargs),
                   tf.float32)


def tensordot(x, kernel):
    """x [..., K] . kernel [K, N] -> [..., N] as float32, in the default graph's precision."""
    if graph_precision() == FLOAT32:
        return tf.tensordot(x, kernel, axes=1)
    return tf.cast(tf.tensordot(for_matmul(x), for_matmul(tf.convert_to_tensor(kernel)), axes=1), tf.float32)


# oneDNN's bfloat16 kernels (AMX tiles of 16 rows x 32 bfloat16s) run at full speed only on whole tiles:
# the logits product [730, 120] . [120, 8769] ran at 516 GFLOP/s, padded to [736, 128] . [128, 8832] at 1,047
# (float32: ~200 either way; bench/PERFORMANCE.md). So the big vocabulary-sized products pad their operands.
ALIGN_ROWS = 32      # rows of the left operand, and the shared dimension, padded to a multiple of this
ALIGN_COLUMNS = 64   # columns of the right operand (the vocabulary) padded to a multiple of this


def aligned_size(size, multiple):
    """The smallest multiple of ``multiple`` >= size (an int, or a scalar tensor)."""
    return (size + multiple - 1) // multiple * multiple


def pad_to(x, rows, columns):
    """x [R, C] padded with zeros to [rows, columns] (rows >= R, columns >= C; ints or scalar tensors)."""
    shape = tf.shape(x)
    return tf.pad(x, [[0, rows - shape[0]], [0, columns - shape[1]]])


def rewrite_to_bfloat16(config):
    """Turn on oneDNN's automatic bfloat16 mixed precision in a session ConfigProto (grappler
    ``auto_mixed_precision_onednn_bfloat16``: convolutions and matmuls of the whole graph in
    bfloat16, what a frozen encoder needs). Returns the config."""
    from tensorflow.core.protobuf import rewriter_config_pb2

    config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    return config
