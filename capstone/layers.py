"""The three layers the decoder needs, written on ``tf.compat.v1.get_variable``.

Why not Keras layers or ``tf.compat.v1.nn.rnn_cell.LSTMCell``? On TensorFlow 2.16+ (Keras 3)
``tf.compat.v1.layers`` and the v1 RNN cells raise "not available with Keras 3", and Keras 3
layers do not create graph variables that a ``tf.compat.v1.train.Saver`` can see. These ones do,
and they are small enough to read in a minute.

Each layer creates its variables once, on its first call (or ``build``), inside a variable scope
named after the layer, so two graphs that build the same layers under the same scope share
variables *by name*: the training graph saves a checkpoint and the captioning graph restores it.
Initialisers are the ones the course's layers used (Keras ``Dense``/``Embedding`` defaults and
the TF1 ``LSTMCell`` defaults), so losses at step 0 match the course notebook.
"""

import collections
import math

import tensorflow as tf

from capstone.support import precision

v1 = tf.compat.v1

# What dynamic_rnn carries from step to step: the cell state and the hidden state.
# A namedtuple is enough: tf.nest walks it like the LSTMStateTuple it replaces.
LSTMState = collections.namedtuple("LSTMState", ["c", "h"])
# The four gate activations of one step: input i, candidate j, forget f, output o.
Gates = collections.namedtuple("Gates", ["i", "j", "f", "o"])

ACTIVATIONS = {None: None, "linear": None, "elu": tf.nn.elu, "relu": tf.nn.relu, "tanh": tf.tanh,
               "sigmoid": tf.sigmoid}


class Dense:
    """y = activation(x @ kernel + bias), as ``keras.layers.Dense``.

    Reads x [..., in_features]; creates ``<name>/kernel`` [in_features, units] and
    ``<name>/bias`` [units] on the first call; returns [..., units].
    """

    def __init__(self, units, activation=None, name="dense"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"Dense {name!r}: unknown activation {activation!r}; known: {sorted(map(str, ACTIVATIONS))}")
        self.units = units
        self.activation = ACTIVATIONS[activation]
        self.name = name
        self.kernel = self.bias = None

    def build(self, in_features):
        with v1.variable_scope(self.name):
            self.kernel = v1.get_variable(
                "kernel", [in_features, self.units], initializer=v1.glorot_uniform_initializer())
            self.bias = v1.get_variable("bias", [self.units], initializer=v1.zeros_initializer())

    def __call__(self, x, bias=None):
        """bias [units]: added in place of the layer's own (the decoders pass one with -inf at banned words)."""
        if self.kernel is None:
            self.build(int(x.shape[-1]))
        bias = self.bias if bias is None else bias
        # In a bfloat16 graph (capstone.support.precision) the product runs in bfloat16, the rest in float32.
        if x.shape.ndims == 2:
            y = precision.matmul(x, self.kernel) + bias
        else:
            y = precision.tensordot(x, self.kernel) + bias
        return self.activation(y) if self.activation else y


class Embedding:
    """A lookup table of word vectors, as ``keras.layers.Embedding``.

    Reads integer ids of any shape; creates ``<name>/embeddings`` [vocab_size, embed_size];
    returns [*ids.shape, embed_size].
    """

    def __init__(self, vocab_size, embed_size, name="embedding"):
        self.vocab_size = vocab_size
        self.embed_size = embed_size
        self.name = name
        self.embeddings = None

    def build(self):
        with v1.variable_scope(self.name):
            self.embeddings = v1.get_variable(
                "embeddings", [self.vocab_size, self.embed_size],
                initializer=v1.random_uniform_initializer(-0.05, 0.05))

    def __call__(self, ids):
        if self.embeddings is None:
            self.build()
        return tf.nn.embedding_lookup(self.embeddings, ids)


class LSTMCell:
    """One LSTM step, the cell ``tf.compat.v1.nn.dynamic_rnn`` runs over time.

    The maths is TF1's ``LSTMCell`` (gate order i, j, f, o; forget bias 1.0 added to f):
        i, j, f, o = split(x @ input_kernel + h @ recurrent_kernel + bias, 4)
        c' = sigmoid(f + 1) * c + sigmoid(i) * tanh(j);   h' = sigmoid(o) * tanh(c')
    TF1 keeps one kernel [input_size + units, 4 * units]; we keep its two halves as two
    variables (same initial distribution) so that the input half can be applied to every
    time step with one matmul outside the recurrence (see ``project_inputs``).

    dynamic_rnn needs ``state_size``, ``output_size``, ``zero_state`` and ``__call__``; that is all.
    """

    def __init__(self, num_units, forget_bias=1.0, name="lstm"):
        self.num_units = num_units
        self.forget_bias = forget_bias
        self.name = name
        self.input_kernel = self.recurrent_kernel = self.bias = None

    @property
    def state_size(self):
        return LSTMState(self.num_units, self.num_units)

    @property
    def output_size(self):
        return self.num_units

    def zero_state(self, batch_size, dtype=tf.float32):
        zeros = tf.zeros([batch_size, self.num_units], dtype=dtype)
        return LSTMState(zeros, zeros)

    def build(self, input_size):
        """Create the variables. Call before dynamic_rnn: variables cannot be born inside its while loop."""
        # TF1 draws its single kernel from glorot_uniform over [input_size + units, 4 * units];
        # drawing both halves with that same limit keeps the course's initial distribution.
        limit = math.sqrt(6.0 / (input_size + self.num_units + 4 * self.num_units))
        init = v1.random_uniform_initializer(-limit, limit)
        with v1.variable_scope(self.name):
            self.input_kernel = v1.get_variable("input_kernel", [input_size, 4 * self.num_units], initializer=init)
            self.recurrent_kernel = v1.get_variable(
                "recurrent_kernel", [self.num_units, 4 * self.num_units], initializer=init)
            self.bias = v1.get_variable("bias", [4 * self.num_units], initializer=v1.zeros_initializer())

    def project_inputs(self, inputs):
        """x @ input_kernel + bias for any leading shape: [..., input_size] -> [..., 4 * units]."""
        if self.input_kernel is None:
            self.build(int(inputs.shape[-1]))
        return precision.tensordot(inputs, self.input_kernel) + self.bias

    def step_with_gates(self, projected, state, recurrent_kernel=None):
        """The LSTM maths, the one place it is written. projected [n, 4 * units] = x @ input_kernel + bias.

        Returns (LSTMState(c', h'), Gates(i, j, f, o)): the gate activations are what a
        hand-written backward pass needs (``capstone.fast.ops.packed_lstm``, which also passes
        ``recurrent_kernel`` as the tensor its custom gradient is taken with respect to).
        """
        kernel = self.recurrent_kernel if recurrent_kernel is None else recurrent_kernel
        gates = projected + precision.matmul(state.h, kernel)          # [n, 4 * units]
        i, j, f, o = tf.split(gates, 4, axis=1)
        gates = Gates(tf.sigmoid(i), tf.tanh(j), tf.sigmoid(f + self.forget_bias), tf.sigmoid(o))
        new_c = gates.f * state.c + gates.i * gates.j
        new_h = gates.o * tf.tanh(new_c)
        return LSTMState(new_c, new_h), gates

    def step_from_projected(self, projected, state):
        """One step when the input half is already computed: projected [batch, 4 * units]."""
        new_state, _ = self.step_with_gates(projected, state)
        return new_state.h, new_state

    def __call__(self, inputs, state, scope=None):
        """inputs [batch, input_size], state LSTMState([batch, units] x 2) -> (h', LSTMState(c', h'))."""
        if self.input_kernel is None:
            self.build(int(inputs.shape[-1]))
        projected = precision.matmul(inputs, self.input_kernel) + self.bias
        return self.step_from_projected(projected, state)
