"""Would TensorFlow's fused LSTM kernel make training faster? Our packed LSTM against ``BlockLSTM``.

The training step's LSTM (``capstone.fast.ops.packed_lstm``) is a while loop of small ops, forward
and backward, over captions packed by length. TensorFlow ships one C++ kernel for a whole LSTM
sequence and its gradient (``tf.raw_ops.BlockLSTM``, what TF1's ``LSTMBlockFusedCell`` ran), with
no per-step op overhead, but it runs every row to the longest caption. Both are built here on the
same variables, for a batch of the course's shapes (64 captions of 10.5 +- 2.5 words, word vectors
of 100, LSTM 300); the loss (sum of squared hidden states at real positions) and its gradients must
agree before the two are timed in interleaved rounds (the best round counts).

    python bench/fused_lstm.py [--rounds 3 --steps 30]

The last line is ``ratio: X.XX``, BlockLSTM's time per forward + backward pass over ours (> 1: ours is faster).
"""

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from capstone.fast.ops import pack_by_length, packed_lstm  # noqa: E402
from capstone.layers import LSTMCell, LSTMState  # noqa: E402
from capstone.support.tf_session import make_session  # noqa: E402

v1 = tf.compat.v1
BATCH, MAX_LEN, WORD_EMBED, UNITS = 64, 20, 100, 300


def packed_loss(cell, x, real):
    """Ours: inputs projected once, the LSTM over packed captions, a hand-written backward pass."""
    packing = pack_by_length(real)
    projected = cell.project_inputs(tf.gather_nd(x, packing.positions))                       # [P, 4U]
    zeros = tf.zeros([BATCH, UNITS])
    hidden = packed_lstm(cell, projected, packing.rows_per_step, LSTMState(zeros, zeros))     # [P, U]
    return tf.reduce_sum(hidden * hidden)


def block_loss(cell, x, real):
    """The fused kernel on the same variables: BlockLSTM's gate order (i, j, f, o) and forget bias match ours."""
    zeros = tf.zeros([BATCH, UNITS])
    steps = tf.reduce_max(tf.reduce_sum(tf.cast(real, tf.int64), 1))
    outputs = tf.raw_ops.BlockLSTM(
        seq_len_max=steps, x=tf.transpose(x, [1, 0, 2]), cs_prev=zeros, h_prev=zeros,
        w=tf.concat([cell.input_kernel, cell.recurrent_kernel], 0), wci=tf.zeros([UNITS]), wcf=tf.zeros([UNITS]),
        wco=tf.zeros([UNITS]), b=cell.bias, forget_bias=cell.forget_bias, cell_clip=-1.0, use_peephole=False)
    hidden = outputs[6]                                                                        # [T, B, U]
    mask = tf.cast(tf.transpose(real), tf.float32)[:, :, None]
    return tf.reduce_sum(hidden * hidden * mask)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="passes per timed round")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    lengths = np.clip(np.round(rng.normal(10.5, 2.5, BATCH)).astype(int) + 1, 2, MAX_LEN)  # + END
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = tf.constant(rng.normal(size=(BATCH, MAX_LEN, WORD_EMBED)).astype(np.float32))
        real = tf.constant(np.arange(MAX_LEN)[None] < lengths[:, None])
        cell = LSTMCell(UNITS)
        cell.build(WORD_EMBED)
        variables = [cell.input_kernel, cell.recurrent_kernel, cell.bias]
        passes = {}
        for name, loss_fn in (("ours: packed_lstm", packed_loss), ("BlockLSTM (fused kernel)", block_loss)):
            loss = loss_fn(cell, x, real)
            passes[name] = [loss] + tf.gradients(loss, variables)
        init = v1.global_variables_initializer()
    session = make_session(graph)
    session.run(init)

    (ours_name, ours), (block_name, block) = passes.items()
    a, b = session.run(ours), session.run(block)
    for got, want in zip(b, a):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
    print(f"same loss ({a[0]:.4f}) and gradients: checked")

    for fetches in passes.values():
        for _ in range(5):
            session.run(fetches)
    best = {name: np.inf for name in passes}
    for round_ in range(args.rounds):
        for name, fetches in passes.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                session.run(fetches)
            seconds = (time.perf_counter() - start) / args.steps
            best[name] = min(best[name], seconds)
            print(f"round {round_ + 1}  {name:26s} {seconds * 1000:7.2f} ms per forward + backward")
    for name, seconds in best.items():
        print(f"best  {name:26s} {seconds * 1000:7.2f} ms")
    print(f"ratio: {best[block_name] / best[ours_name]:.2f}")


if __name__ == "__main__":
    main()
