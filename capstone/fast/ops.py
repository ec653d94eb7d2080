"""The ops of ``FastDecoder``'s graph that the course graph does not have.

Each computes exactly what the course's ops compute (tests/test_fast_decoder.py checks values and
gradients against the course's ``Decoder``), with less work; bench/PERFORMANCE.md says how much
each one gives. They are custom gradients: the forward pass is plain TensorFlow, the backward
pass is written out so that it can skip work automatic differentiation would do.
"""

import collections

import tensorflow as tf

from capstone.layers import LSTMState
from capstone.support import precision

v1 = tf.compat.v1

Packing = collections.namedtuple("Packing", ["order", "positions", "rows_per_step"])


def pack_by_length(real):
    """Where the LSTM must run: every caption up to its last real target, longest captions first.

    real [B, T] bool (ground truth is not PAD) -> Packing:
      order [B]: rows sorted by length, longest first;
      positions [P, 2] int32: (row, time) of each computed position, time-major: all rows' step 0
        (in ``order``), then step 1, ... At step t the first rows_per_step[t] sorted rows run;
      rows_per_step [steps] int32, never increasing.
    [[1, 1, 0], [1, 1, 1]] -> order [1, 0], positions [(1,0), (0,0), (1,1), (0,1), (1,2)], rows_per_step [2, 2, 1].
    """
    time = tf.shape(real)[1]
    lengths = tf.reduce_max(tf.cast(real, tf.int32) * (tf.range(time) + 1)[None], axis=1)  # [B] last real + 1
    order = tf.argsort(lengths, direction="DESCENDING", stable=True)
    sorted_lengths = tf.gather(lengths, order)
    steps = tf.maximum(tf.reduce_max(tf.concat([sorted_lengths, [0]], 0)), 1)  # one (empty) step if none
    running = tf.range(steps)[:, None] < sorted_lengths[None, :]                   # [steps, B] (sorted rows)
    step_and_rank = tf.cast(tf.where(running), tf.int32)                           # [P, 2] time-major
    positions = tf.stack([tf.gather(order, step_and_rank[:, 1]), step_and_rank[:, 0]], axis=1)
    return Packing(order, positions, tf.reduce_sum(tf.cast(running, tf.int32), axis=1))


# What the forward pass keeps of each step for the backward pass, side by side in one
# [rows, len(KEPT) * U] matrix (one TensorArray write per step instead of eight).
KEPT = ("i", "j", "f", "o", "c", "c_prev", "h_prev", "h")


def kept_column(kept, name, units):
    """The [rows, U] block ``name`` (one of KEPT) of a kept matrix."""
    index = KEPT.index(name)
    return kept[:, index * units:(index + 1) * units]


def packed_lstm(cell, packed_inputs, rows_per_step, initial_state):
    """The LSTM over packed captions, with a hand-written backward pass.

    Reads packed_inputs [P, 4U] (``cell.project_inputs`` of the packed word vectors),
    rows_per_step [steps] and initial_state LSTMState([B, U] x 2), rows in the packing's order.
    Returns packed hidden states [P, U]: at step t the first rows_per_step[t] rows take one step,
    the others have ended (their later positions are PAD and never reach the loss).

    The forward maths is ``LSTMCell.step_with_gates``. Automatic differentiation of a while loop
    would compute the recurrent kernel's gradient as one small matmul per step and keep a stack of
    every intermediate; here the backward loop only carries (dh, dc) and collects each step's gate
    gradients, and the kernel's gradient is h_prev^T @ gate gradients, one matmul for all steps.
    """
    units = cell.num_units
    steps = tf.shape(rows_per_step)[0]
    starts = tf.cumsum(rows_per_step, exclusive=True)  # first packed row of each step

    def rows_of(packed, t):
        """The rows of step t of a packed [P, width] tensor: [rows_per_step[t], width]."""
        return tf.slice(packed, [starts[t], 0], [rows_per_step[t], -1])

    def collect(width):
        return tf.TensorArray(tf.float32, size=steps, element_shape=tf.TensorShape([None, width]), infer_shape=False)

    rows_of_units = tf.TensorShape([None, units])

    @tf.custom_gradient
    def lstm(inputs, c0, h0, recurrent_kernel):
        kernel = precision.for_matmul(recurrent_kernel)  # bfloat16 graph: cast once, not at every step

        def forward(t, c, h, outputs):
            n = rows_per_step[t]
            state = LSTMState(c[:n], h[:n])                              # the captions still running
            new_state, gates = cell.step_with_gates(rows_of(inputs, t), state, kernel)
            kept = tf.concat([*gates, new_state.c, state.c, state.h, new_state.h], axis=1)  # KEPT order
            return t + 1, new_state.c, new_state.h, outputs.write(t, kept)

        _, _, _, outputs = v1.while_loop(
            lambda t, *_: t < steps, forward, (tf.constant(0), c0, h0, collect(len(KEPT) * units)),
            shape_invariants=(tf.TensorShape([]), rows_of_units, rows_of_units, tf.TensorShape(None)),
            name="packed_lstm")
        kept = outputs.concat()                                          # [P, len(KEPT) * U]
        hidden = kept_column(kept, "h", units)                           # [P, U]

        def backward(d_hidden):
            # The loss gathers rows of ``hidden``, so d_hidden may come as IndexedSlices; made dense
            # here it is converted once, not once per step inside the loop.
            d_hidden = tf.convert_to_tensor(d_hidden)                    # [P, U]

            def step_back(t, dh_next, dc_next, gate_grads):
                n, start = rows_per_step[t], starts[t]
                more = [[0, n - tf.shape(dh_next)[0]], [0, 0]]          # captions that end at step t join
                step = rows_of(kept, t)
                i, j, f, o, c, c_prev = (kept_column(step, name, units) for name in KEPT[:6])
                dh = tf.slice(d_hidden, [start, 0], [n, -1]) + tf.pad(dh_next, more)
                tanh_c = tf.tanh(c)
                dc = tf.pad(dc_next, more) + dh * o * (1 - tanh_c * tanh_c)
                d_gates = tf.concat([dc * j * i * (1 - i), dc * i * (1 - j * j),   # [n, 4U], pre-activation
                                     dc * c_prev * f * (1 - f), dh * tanh_c * o * (1 - o)], axis=1)
                dh_prev = precision.matmul(d_gates, kernel, transpose_b=True)
                return t - 1, dh_prev, dc * f, gate_grads.write(t, d_gates)

            nothing = tf.zeros([0, units])
            _, dh0, dc0, gate_grads = v1.while_loop(
                lambda t, *_: t >= 0, step_back, (steps - 1, nothing, nothing, collect(4 * units)),
                shape_invariants=(tf.TensorShape([]), rows_of_units, rows_of_units, tf.TensorShape(None)),
                name="packed_lstm_grad")
            gate_grads = gate_grads.concat()                             # [P, 4U]
            d_kernel = precision.matmul(kept_column(kept, "h_prev", units), gate_grads, transpose_a=True)  # [U, 4U]
            never_ran = [[0, tf.shape(h0)[0] - tf.shape(dh0)[0]], [0, 0]]  # empty captions: no gradient
            return gate_grads, tf.pad(dc0, never_ran), tf.pad(dh0, never_ran), d_kernel

        return hidden, backward

    return lstm(packed_inputs, initial_state.c, initial_state.h, tf.convert_to_tensor(cell.recurrent_kernel))


def lookup_with_dense_gradient(embedding, ids):
    """``embedding(ids)`` whose gradient for the table is a dense [vocab, EMBED] tensor.

    A lookup's gradient is normally IndexedSlices (only the rows used), and TF1's Adam then updates
    the table with about ten ops that each still sweep the whole table; with a dense gradient it is
    one fused ApplyAdam kernel. Same numbers: Adam decays the moments of unused rows either way.
    """
    if embedding.embeddings is None:
        embedding.build()
    vocab_size, embed_size = embedding.vocab_size, embedding.embed_size

    @tf.custom_gradient
    def lookup(table):
        def gradient(d_vectors):
            flat = tf.reshape(d_vectors, [-1, embed_size])                   # [ids, EMBED]
            return tf.math.unsorted_segment_sum(flat, tf.reshape(ids, [-1]), vocab_size)

        return tf.gather(table, ids), gradient

    return lookup(tf.convert_to_tensor(embedding.embeddings))


def dense_softmax_cross_entropy(inputs, kernel, bias, labels):
    """Cross-entropy of softmax(inputs @ kernel + bias) at labels, with a hand-written gradient.

    inputs [N, K], kernel [K, vocab], bias [vocab], labels [N] int -> [N] cross-entropies, the
    numbers of ``tf.nn.sparse_softmax_cross_entropy_with_logits`` on those logits (in a bfloat16
    graph: to bfloat16's rounding).

    Why by hand: the logits and their gradient softmax - one_hot are [N, vocab] matrices, the
    biggest of a training step, and every pass over them costs milliseconds. Here there are three:
    the product, one softmax (oneDNN's kernel: ~12 x faster on CPU than TensorFlow's fused
    ``SparseSoftmaxCrossEntropyWithLogits``, bench/PERFORMANCE.md) and one scatter of N entries.
      * The bias rides in the product as one more row of the kernel, so no pass adds it and its
        gradient comes out of the backward product (inputs get a column of ones).
      * The loss is -log p(label), N numbers gathered from the softmax. Where a label's probability
        underflows (a loss above ~69) it takes log-sum-exp = max - log(largest probability) instead,
        exact however far the label lies below the best word; only then are the maxima computed.
      * The gradient is d * (softmax - one_hot) with the row weights d = d loss / d cross-entropy:
        the scatter subtracts the one-hot part (one entry per row) from the softmax, and d scales the
        small operands of the two backward products instead of the [N, vocab] matrix
        ((d * R) @ W^T = d * (R @ W^T), x^T (d * R) = (d * x)^T R).
    In a bfloat16 graph the operands, the softmax and the residual R are bfloat16 (R feeds bfloat16
    products), the loss float32; the operands are padded to whole AMX tiles
    (``precision.ALIGN_ROWS`` / ``ALIGN_COLUMNS``: unpadded, the product runs at float32's speed), with
    -1e30 as the bias of the padded vocabulary columns, which the softmax turns into 0.
    """
    labels = tf.cast(labels, tf.int32)
    units, vocab_size = kernel.shape                                     # K, vocab (a variable's static shape)
    low = precision.graph_precision() == precision.BFLOAT16
    dtype = tf.bfloat16 if low else tf.float32
    width = precision.aligned_size(units + 1, precision.ALIGN_ROWS) if low else units + 1        # Kp
    columns = precision.aligned_size(vocab_size, precision.ALIGN_COLUMNS) if low else vocab_size  # Vp

    @tf.custom_gradient
    def cross_entropy(inputs, kernel, bias):
        n = tf.shape(inputs)[0]
        rows = precision.aligned_size(n, precision.ALIGN_ROWS) if low else n                   # Np
        x = precision.pad_to(tf.concat([inputs, tf.ones([n, 1])], 1), rows, width)             # [Np, Kp] float32
        bias_row = tf.pad(bias, [[0, columns - vocab_size]], constant_values=-1e30)[None]     # [1, Vp]
        w = tf.concat([precision.pad_to(tf.cast(kernel, dtype), units, columns), tf.cast(bias_row, dtype)], 0)
        w = precision.pad_to(w, width, columns)                                               # [Kp, Vp]
        logits = tf.matmul(tf.cast(x, dtype), w)                                              # [Np, Vp]
        probs = tf.nn.softmax(logits)                                                         # [Np, Vp]
        label_positions = tf.stack([tf.range(n), labels], axis=1)                             # [N, 2]
        label_probs = tf.cast(tf.gather_nd(probs, label_positions), tf.float32)               # [N]

        def exactly():
            """log-sum-exp - the label's logit, for a label whose probability underflowed. The
            largest probability is 1 / sum exp(logits - max), never small: log-sum-exp = max - log(it)."""
            top = tf.cast(tf.reduce_max(logits[:n], axis=1), tf.float32)
            top_prob = tf.cast(tf.reduce_max(probs[:n], axis=1), tf.float32)
            return top - tf.math.log(top_prob) - tf.cast(tf.gather_nd(logits, label_positions), tf.float32)

        # -log p(label) needs no pass over [N, vocab]; only a loss above ~69 (p < 1e-30) takes the two maxima.
        xent = tf.cond(tf.reduce_all(label_probs > 1e-30), lambda: -tf.math.log(label_probs), exactly)

        def gradient(d_xent):
            residual = tf.tensor_scatter_nd_sub(probs, label_positions, tf.ones([n], dtype))  # softmax - one_hot
            d = tf.pad(d_xent, [[0, rows - n]])[:, None]                                      # [Np, 1]; padded rows 0
            d_x = tf.cast(tf.matmul(residual, w, transpose_b=True), tf.float32)                # [Np, Kp]
            d_w = tf.cast(tf.matmul(tf.cast(d * x, dtype), residual, transpose_a=True), tf.float32)  # [Kp, Vp]
            return d_xent[:, None] * d_x[:n, :units], d_w[:units, :vocab_size], d_w[units, :vocab_size]

        return xent, gradient

    return cross_entropy(inputs, tf.convert_to_tensor(kernel), tf.convert_to_tensor(bias))
