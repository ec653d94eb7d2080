"""The training graph ``train`` uses: the course's loss, computed with less work.

``FastDecoder`` builds the same variables as ``capstone.decoder.Decoder`` (``make_layers``,
same scope, same names, so every checkpoint is interchangeable) and the same loss, but only
what that loss needs (each part measured in bench/train_step.py --levers; the ops are in
``capstone.fast.ops``):
  * the LSTM only over each caption's real tokens (``packed_lstm``: captions sorted by length, the
    batch shrinks as they end), with a hand-written backward pass whose recurrent-kernel gradient
    is one matmul after the loop instead of one small matmul per step;
  * logits only where the ground truth is not PAD (a third of a COCO batch is padding), and the
    gradient of logits + cross-entropy by hand, without building an [N, vocab] one-hot;
  * a dense gradient for the word embeddings (one fused Adam update).
It has no ``flat_token_logits``: the logits exist only inside the loss. tests/test_fast_decoder.py
checks its loss and gradients against the course graph's.
"""

import tensorflow as tf

from capstone.config import ModelConfig
from capstone.decoder import SCOPE, Dropout, initial_state, make_layers
from capstone.fast.ops import dense_softmax_cross_entropy, lookup_with_dense_gradient, pack_by_length, packed_lstm
from capstone.layers import LSTMState

v1 = tf.compat.v1


class FastDecoder:
    """Builds the fast training graph into the default graph (same arguments as ``Decoder``)."""

    def __init__(self, vocab_size, pad_idx, config=None):
        self.model_config = config or ModelConfig()
        self.vocab_size = vocab_size
        self.pad_idx = pad_idx
        with v1.variable_scope(SCOPE):
            self.layers = make_layers(vocab_size, self.model_config)
            self.build_inputs()
            self.build_initial_state()
            self.build_packing()
            self.build_rnn()
            self.build_loss()

    def build_inputs(self):
        """Inputs: none.
        Outputs: img_embeds [B, IMG_EMBED], sentences [B, T], dropout_rate [], dropout_seed [2]:
          the placeholders of ``Decoder``, fed the same way (``capstone.training.generate_batch``).
        """
        self.img_embeds = v1.placeholder(tf.float32, [None, self.model_config.img_embed_size], name="img_embeds")
        self.sentences = v1.placeholder(tf.int32, [None, None], name="sentences")
        self.dropout = Dropout(self.model_config)
        self.dropout_rate, self.dropout_seed = self.dropout.rate, self.dropout.seed

    def build_initial_state(self):
        """Inputs: img_embeds.
        Outputs: h0 = c0 [B, LSTM_UNITS] (``capstone.decoder.initial_state``).
        """
        state = initial_state(self.layers, self.img_embeds, self.dropout)
        self.h0, self.c0 = state.h, state.c

    def build_packing(self):
        """Inputs: sentences.
        Outputs: packing (``pack_by_length``: where the LSTM must run, time-major, longest
          captions first); packed_words [P, WORD_EMBED], the input word of each such position.
        """
        targets = self.sentences[:, 1:]                                              # [B, T-1]
        self.packing = pack_by_length(tf.not_equal(targets, self.pad_idx))
        word_embeds = lookup_with_dense_gradient(self.layers.word_embed, self.sentences[:, :-1])
        self.packed_words = tf.gather_nd(self.dropout(word_embeds), self.packing.positions)  # [P, WORD_EMBED]

    def build_rnn(self):
        """Inputs: packed_words, h0, c0, packing.
        Outputs: packed_hidden_states [P, LSTM_UNITS], one row per position of ``packing``.
        """
        lstm = self.layers.lstm
        packed_inputs = lstm.project_inputs(self.packed_words)                       # [P, 4 * LSTM_UNITS]
        sorted_state = LSTMState(*(tf.gather(s, self.packing.order) for s in (self.c0, self.h0)))
        self.packed_hidden_states = packed_lstm(lstm, packed_inputs, self.packing.rows_per_step, sorted_state)

    def build_loss(self):
        """Inputs: packed_hidden_states, sentences, packing.
        Outputs: targets [N] (the non-PAD ground truth), logits_bottleneck [N, LOGIT_BOTTLENECK],
          loss [], the mean cross-entropy over the N targets: the course's ``loss``;
          caption_weights [B] (fed) and weighted_caption_loss [] (``weighted_caption_loss``).
        """
        # Packed positions stop at each caption's last real target; a PAD inside a caption
        # (never made by batch_captions_to_matrix) is dropped here.
        ground_truth = tf.gather_nd(self.sentences[:, 1:], self.packing.positions)    # [P]
        real = tf.reshape(tf.where(tf.not_equal(ground_truth, self.pad_idx)), [-1])
        self.targets = tf.gather(ground_truth, real)                                 # [N]
        hidden = tf.gather(self.packed_hidden_states, real)                          # [N, LSTM_UNITS]
        self.logits_bottleneck = self.layers.token_logits_bottleneck(self.dropout(hidden))
        token_logits = self.layers.token_logits
        xent = dense_softmax_cross_entropy(self.logits_bottleneck, token_logits.kernel, token_logits.bias,
                                           self.targets)                             # [N]
        self.loss = tf.reduce_sum(xent) / tf.maximum(tf.cast(tf.size(xent), tf.float32), 1.0)
        target_rows = tf.gather(self.packing.positions[:, 0], real)                 # [N] caption of each target
        self.caption_weights, self.weighted_caption_loss = weighted_caption_loss(xent, target_rows, self.sentences)


def weighted_caption_loss(xent, target_rows, sentences):
    """The loss of self-critical training (``capstone.self_critical``): each caption's negative
    log-likelihood (its tokens' cross-entropies summed, PAD excluded) times a weight fed per caption,
    averaged over the captions. Built after every variable, so the cross-entropy graph is unchanged.

    Reads xent [N] and target_rows [N] (the caption each target belongs to) and sentences [B, T].
    Returns (caption_weights [B] placeholder, weighted loss []).
    """
    weights = v1.placeholder(tf.float32, [None], name="caption_weights")
    per_target = xent * tf.gather(weights, target_rows)
    captions = tf.maximum(tf.cast(tf.shape(sentences)[0], tf.float32), 1.0)
    return weights, tf.reduce_sum(per_target) / captions
