"""One place that opens ``tf.compat.v1.Session`` objects, with CPU threading chosen on purpose.

TensorFlow's defaults size both thread pools to every core; on a 2-core laptop the inter-op
pool then competes with the intra-op pool (and with our JPEG decoding threads). The small
recurrent graphs here have little op-level parallelism, so one inter-op thread and all cores
for intra-op (the matmuls) is the better split.
"""

import os

import tensorflow as tf


def session_config(intra_op_threads=None, inter_op_threads=None):
    cores = os.cpu_count() or 1
    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=intra_op_threads or cores,
        inter_op_parallelism_threads=inter_op_threads or min(2, cores),
        allow_soft_placement=True,
    )
    config.gpu_options.allow_growth = True  # share a GPU with the notebook's other sessions
    return config


def make_session(graph, **threads):
    """A Session on ``graph`` with the threading above."""
    return tf.compat.v1.Session(graph=graph, config=session_config(**threads))
