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
"""

import types

import tensorflow as tf

from capstone.config import ModelConfig
from capstone.layers import Dense, Embedding, LSTMCell, LSTMState, ProjectedInputLSTM

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
      fast: same maths, fewer FLOPs (see ``build_rnn`` and ``build_logits``). With fast=True the
        flat_* tensors hold only non-PAD positions, so their first dimension is the number of
        real tokens rather than batch * (time - 1).
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
        """
        bottleneck = self.img_embed_to_bottleneck(self.img_embeds)  # [B, IMG_EMBED_BOTTLENECK]
        self.h0 = self.img_embed_bottleneck_to_h0(bottleneck)       # [B, LSTM_UNITS]
        self.c0 = self.h0

    def build_word_embeddings(self):
        """Inputs: sentences.
        Outputs: word_embeds [B, T-1, WORD_EMBED]: every token but the last is an input, since
          the last one has no next token to predict.
        """
        self.word_embeds = self._dropout(self.word_embed(self.sentences[:, :-1]))

    def build_rnn(self):
        """Inputs: word_embeds, h0, c0.
        Outputs: hidden_states [B, T-1, LSTM_UNITS], flat_hidden_states [B*(T-1), LSTM_UNITS].

        fast: x @ input_kernel for all time steps is one big matmul before the loop, so each
        step of the recurrence multiplies only h @ recurrent_kernel.
        """
        self.lstm.build(self.config.word_embed_size)  # variables must exist before the while loop
        initial_state = LSTMState(c=self.c0, h=self.h0)
        if self.fast:
            cell, inputs = ProjectedInputLSTM(self.lstm), self.lstm.project_inputs(self.word_embeds)
        else:
            cell, inputs = self.lstm, self.word_embeds
        self.hidden_states, _ = v1.nn.dynamic_rnn(cell, inputs, initial_state=initial_state, scope="rnn")
        self.flat_hidden_states = tf.reshape(self.hidden_states, [-1, self.config.lstm_units])

    def build_logits(self):
        """Inputs: flat_hidden_states, sentences.
        Outputs: flat_ground_truth [B*(T-1)] (all tokens but the first), flat_loss_mask (1.0 where
          the ground truth is not PAD), flat_token_logits [B*(T-1), vocab_size].

        fast: PAD positions never reach the loss, so their logits (the biggest matmul of the
        model: LOGIT_BOTTLENECK x vocab_size per position) are not computed at all.
        """
        self.flat_ground_truth = tf.reshape(self.sentences[:, 1:], [-1])
        self.flat_loss_mask = tf.cast(tf.not_equal(self.flat_ground_truth, self.pad_idx), tf.float32)
        hidden = self.flat_hidden_states
        if self.fast:
            real = tf.reshape(tf.where(self.flat_loss_mask > 0), [-1])  # indices of non-PAD positions
            hidden = tf.gather(hidden, real)
            self.flat_ground_truth = tf.gather(self.flat_ground_truth, real)
            self.flat_loss_mask = tf.gather(self.flat_loss_mask, real)
        self.flat_token_logits = self.token_logits(self.token_logits_bottleneck(self._dropout(hidden)))

    def build_loss(self):
        """Inputs: flat_token_logits, flat_ground_truth, flat_loss_mask.
        Outputs: loss [], the mean cross-entropy over non-PAD positions.
        """
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=self.flat_ground_truth, logits=self.flat_token_logits)
        self.loss = tf.reduce_sum(xent * self.flat_loss_mask) / tf.maximum(tf.reduce_sum(self.flat_loss_mask), 1.0)
