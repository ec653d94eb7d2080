"""The training graph: image embedding -> LSTM initial state -> next-token loss.

The course's ``class decoder:`` built everything as class attributes, so only one decoder
could exist per process. Here ``Decoder(...)`` builds the same tensors, with the same names,
into the current default graph; build it under ``with tf.Graph().as_default():`` as often as
you like.

Data flow (read the ``build_*`` docstrings top to bottom):

    img_embeds [B, IMG_EMBED]  -> img_embed_to_bottleneck -> img_embed_bottleneck_to_h0 -> h0 = c0
    sentences [B, T]           -> word_embeds [B, T-1, WORD_EMBED] (all tokens but the last)
    (h0, c0), word_embeds      -> dynamic_rnn -> hidden_states [B, T-1, LSTM_UNITS]
    flat_hidden_states         -> token_logits_bottleneck -> token_logits -> flat_token_logits
    flat_ground_truth (all tokens but the first), flat_loss_mask (not PAD) -> loss

``Decoder(fast=True)``, what training uses, computes the same loss with less work (measured one
by one in bench/train_step.py --levers; the parts are in capstone/fast_ops.py):
  * logits only where the ground truth is not PAD (a third of a COCO batch is padding);
  * the LSTM only over each caption's real tokens (``packed_lstm``: captions sorted by length, the
    batch shrinks as they end), with a hand-written backward pass whose recurrent-kernel gradient
    is one matmul after the loop instead of one small matmul per step;
  * the gradient of logits + cross-entropy by hand, without building an [N, vocab] one-hot, and a
    dense gradient for the word embeddings (one fused Adam update).
tests/test_decoder.py and tests/test_fast_decoder.py check that its losses and gradients are the
course graph's.
"""

import types

import tensorflow as tf

from capstone.config import ModelConfig
from capstone.fast.ops import (dense_softmax_cross_entropy, lookup_with_dense_gradient, pack_by_length,
                               packed_lstm)
from capstone.layers import Dense, Embedding, LSTMCell, LSTMState

v1 = tf.compat.v1

# Variable scope of every decoder variable. The captioning graph builds the same layers under
# the same scope, which is how it finds the trained weights in a checkpoint.
SCOPE = "decoder"


def make_layers(vocab_size, config):
    """The course's six layers, with the course's names. Variables appear on first use."""
    return types.SimpleNamespace(
        # image embedding -> bottleneck -> LSTM initial state
        img_embed_to_bottleneck=Dense(config.img_embed_bottleneck, activation="elu", name="img_embed_to_bottleneck"),
        img_embed_bottleneck_to_h0=Dense(config.lstm_units, activation="elu", name="img_embed_bottleneck_to_h0"),
        # word index -> word vector
        word_embed=Embedding(vocab_size, config.word_embed_size, name="word_embed"),
        # the recurrence
        lstm=LSTMCell(config.lstm_units, name="lstm"),
        # hidden state -> bottleneck -> one logit per vocabulary token
        token_logits_bottleneck=Dense(config.logit_bottleneck, activation="elu", name="token_logits_bottleneck"),
        token_logits=Dense(vocab_size, name="token_logits"),
    )


class Decoder:
    """Builds the course decoder into the default graph.

    Args:
      vocab_size: number of tokens, specials included.
      pad_idx: index of PAD; positions whose ground truth is PAD do not count in the loss.
      config: a ModelConfig (sizes, dropout).
      fast: same maths, less work (see ``build_rnn``, ``build_logits`` and ``build_loss``). With
        fast=True flat_token_logits, flat_ground_truth and flat_loss_mask hold only non-PAD
        positions, so their first dimension is the number of real tokens rather than
        batch * (time - 1), in time-major order (all first words, then all second words, ...).
    """

    def __init__(self, vocab_size, pad_idx, config=None, fast=False):
        self.config = config or ModelConfig()
        self.vocab_size = vocab_size
        self.pad_idx = pad_idx
        self.fast = fast
        with v1.variable_scope(SCOPE):
            self.layers = make_layers(vocab_size, self.config)
            # The course reads these as decoder.<layer name>.
            vars(self).update(vars(self.layers))
            self.build_inputs()
            self.build_initial_state()
            self.build_word_embeddings()
            self.build_rnn()
            self.build_logits()
            self.build_loss()

    def build_inputs(self):
        """Inputs: none.
        Outputs: img_embeds [B, IMG_EMBED] float32, sentences [B, T] int32 (START ... END PAD ...),
          dropout_rate [] (0 unless fed: training feeds config.dropout).
        """
        self.img_embeds = v1.placeholder(tf.float32, [None, self.config.img_embed_size], name="img_embeds")
        self.sentences = v1.placeholder(tf.int32, [None, None], name="sentences")
        self.dropout_rate = v1.placeholder_with_default(0.0, [], name="dropout_rate")

    def _dropout(self, x):
        # Only built when the config asks for it, so the course graph stays the course graph.
        return tf.nn.dropout(x, rate=self.dropout_rate) if self.config.dropout > 0 else x

    def build_initial_state(self):
        """Inputs: img_embeds.
        Outputs: h0 = c0 [B, LSTM_UNITS], the LSTM's state before the first word.

        With dropout, some embedding features are dropped too: the first layer is the largest
        one that sees each image only through its embedding (1280 x 120 weights for a few hundred
        photos), and it is where a small dataset overfits first. On Flickr8k-dev this lowered the
        best validation loss by ~0.1 and raised the mean test CIDEr over four seeds (0.213 -> 0.244 greedy).
        """
        bottleneck = self.img_embed_to_bottleneck(self._dropout(self.img_embeds))  # [B, IMG_EMBED_BOTTLENECK]
        self.h0 = self.img_embed_bottleneck_to_h0(bottleneck)       # [B, LSTM_UNITS]
        self.c0 = self.h0

    def build_word_embeddings(self):
        """Inputs: sentences.
        Outputs: word_embeds [B, T-1, WORD_EMBED]: every token but the last is an input, since
          the last one has no next token to predict.
        """
        inputs = self.sentences[:, :-1]
        word_embeds = lookup_with_dense_gradient(self.word_embed, inputs) if self.fast else self.word_embed(inputs)
        self.word_embeds = self._dropout(word_embeds)

    def build_rnn(self):
        """Inputs: word_embeds, h0, c0.
        Outputs: hidden_states [B, T-1, LSTM_UNITS], flat_hidden_states [B*(T-1), LSTM_UNITS].

        fast: the LSTM runs only up to each caption's last real target (``packed_lstm``), and
        also outputs packing (where each computed position is) and packed_hidden_states [P,
        LSTM_UNITS], one row per computed position; the loss reads those. hidden_states is then
        zero after a caption's end, and computed only if fetched.
        """
        self.lstm.build(self.config.word_embed_size)  # variables must exist before the while loop
        initial_state = LSTMState(c=self.c0, h=self.h0)
        if self.fast:
            targets = self.sentences[:, 1:]                                          # [B, T-1]
            self.packing = pack_by_length(tf.not_equal(targets, self.pad_idx))
            packed_words = tf.gather_nd(self.word_embeds, self.packing.positions)  # [P, WORD_EMBED]
            packed_inputs = self.lstm.project_inputs(packed_words)                  # [P, 4 * LSTM_UNITS]
            sorted_state = LSTMState(*(tf.gather(s, self.packing.order) for s in initial_state))
            self.packed_hidden_states = packed_lstm(self.lstm, packed_inputs, self.packing.rows_per_step,
                                                    sorted_state)                  # [P, LSTM_UNITS]
            self.hidden_states = tf.scatter_nd(
                self.packing.positions, self.packed_hidden_states,
                tf.concat([tf.shape(targets), [self.config.lstm_units]], 0))
        else:
            self.hidden_states, _ = v1.nn.dynamic_rnn(self.lstm, self.word_embeds, initial_state=initial_state,
                                                      scope="rnn")
        self.flat_hidden_states = tf.reshape(self.hidden_states, [-1, self.config.lstm_units])

    def build_logits(self):
        """Inputs: flat_hidden_states (fast: packed_hidden_states), sentences.
        Outputs: flat_ground_truth [B*(T-1)] (all tokens but the first), flat_loss_mask (1.0 where
          the ground truth is not PAD), flat_token_logits [B*(T-1), vocab_size].

        fast: PAD positions never reach the loss, so their logits (the biggest matmul of the
        model: LOGIT_BOTTLENECK x vocab_size per position) are not computed at all; also outputs
        logits_bottleneck [N, LOGIT_BOTTLENECK], where the loss starts.
        """
        self.flat_ground_truth = tf.reshape(self.sentences[:, 1:], [-1])
        self.flat_loss_mask = tf.cast(tf.not_equal(self.flat_ground_truth, self.pad_idx), tf.float32)
        if not self.fast:
            bottleneck = self.token_logits_bottleneck(self._dropout(self.flat_hidden_states))
            self.flat_token_logits = self.token_logits(bottleneck)
            return
        # Packed positions stop at each caption's last real target; a PAD inside a caption
        # (never made by batch_captions_to_matrix) is dropped here.
        ground_truth = tf.gather_nd(self.sentences[:, 1:], self.packing.positions)   # [P]
        real = tf.reshape(tf.where(tf.not_equal(ground_truth, self.pad_idx)), [-1])
        self.flat_ground_truth = tf.gather(ground_truth, real)                       # [N]
        self.flat_loss_mask = tf.ones_like(self.flat_ground_truth, tf.float32)
        hidden = tf.gather(self.packed_hidden_states, real)                          # [N, LSTM_UNITS]
        self.logits_bottleneck = self.token_logits_bottleneck(self._dropout(hidden))  # [N, LOGIT_BOTTLENECK]
        self.token_logits.build(self.config.logit_bottleneck)
        # the loss recomputes these inside dense_softmax_cross_entropy; this is the course's tensor
        self.flat_token_logits = tf.nn.bias_add(tf.matmul(self.logits_bottleneck, self.token_logits.kernel),
                                                self.token_logits.bias)              # [N, vocab]

    def build_loss(self):
        """Inputs: flat_token_logits (fast: logits_bottleneck), flat_ground_truth, flat_loss_mask.
        Outputs: loss [], the mean cross-entropy over non-PAD positions.

        fast: the logits and their cross-entropy in one function with a hand-written gradient
        (``dense_softmax_cross_entropy``).
        """
        if self.fast:
            xent = dense_softmax_cross_entropy(self.logits_bottleneck, self.token_logits.kernel,
                                               self.token_logits.bias, self.flat_ground_truth)
        else:
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=self.flat_ground_truth,
                                                                  logits=self.flat_token_logits)
        self.loss = tf.reduce_sum(xent * self.flat_loss_mask) / tf.maximum(tf.reduce_sum(self.flat_loss_mask), 1.0)
