"""One place that opens ``tf.compat.v1.Session`` objects, with CPU threading chosen on purpose.

TensorFlow's defaults size both thread pools to every core; on a 2-core laptop the inter-op
pool then competes with the intra-op pool (and with our JPEG decoding threads). The small
recurrent graphs here have little op-level parallelism, so at most two inter-op threads and all
usable cores for intra-op (the matmuls) is the better split. "Usable" is the CPU affinity mask:
a container or ``taskset`` limited to 2 of 64 cores should not start 64 threads.
"""

import os

import tensorflow as tf

from capstone.support.precision import rewrite_to_bfloat16


def usable_cores():
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def session_config(intra_op_threads=None, inter_op_threads=None, bfloat16_rewrite=False):
    """Threads as above; ``bfloat16_rewrite``: oneDNN's automatic bfloat16 matmuls and convolutions
    (``capstone.support.precision.rewrite_to_bfloat16``, for graphs that hold a frozen encoder)."""
    cores = usable_cores()
    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=intra_op_threads or cores,
        inter_op_parallelism_threads=inter_op_threads or min(2, cores),
        allow_soft_placement=True,
    )
    config.gpu_options.allow_growth = True  # share a GPU with the notebook's other sessions
    return rewrite_to_bfloat16(config) if bfloat16_rewrite else config


def make_session(graph, **options):
    """A Session on ``graph`` with the threading above (options: those of ``session_config``)."""
    return tf.compat.v1.Session(graph=graph, config=session_config(**options))
