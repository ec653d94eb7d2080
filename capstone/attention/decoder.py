"""The attention decoder's training graph: a grid of image features -> next-token loss.

Like the course's ``Decoder`` (same placeholders, same masked cross-entropy, built as often as
you like), but the image is a grid of features that every word attends to:

    img_embeds [B, H, W, D] -> feature_bottleneck -> features [B, L, F] -> mean -> h0, c0
    sentences [B, T]        -> word_embeds [B, T-1, WORD_EMBED]
    for each word: attend (alpha [B, L], beta) -> context [B, F] -> LSTM -> [h; context]
    -> (non-PAD positions only) token_logits_bottleneck -> token_logits -> cross-entropy
    loss = that cross-entropy + attention_lambda * sum_l (1 - sum_t alpha_tl)^2 (doubly stochastic:
           over a caption, every location gets looked at about once)

It gets ``FastDecoder``'s treatment where it pays (bench/attention.py): logits only where the
ground truth is not PAD, the logits' cross-entropy with a hand-written gradient, and a dense
gradient for the word embeddings (``capstone.fast.ops``).
"""

import tensorflow as tf

from capstone.attention.layers import attention_step, initial_state, make_attention_layers, squeeze_features
from capstone.config import ModelConfig
from capstone.decoder import SCOPE, Dropout
from capstone.fast.ops import dense_softmax_cross_entropy, lookup_with_dense_gradient
from capstone.fast.trainer import weighted_caption_loss
from capstone.layers import LSTMState

v1 = tf.compat.v1


class AttentionDecoder:
    """Builds the attention decoder into the default graph (same arguments as ``Decoder``)."""

    def __init__(self, vocab_size, pad_idx, config=None):
        self.model_config = config or ModelConfig(decoder="attention")
        self.vocab_size = vocab_size
        self.pad_idx = pad_idx
        with v1.variable_scope(SCOPE):
            self.layers = make_attention_layers(vocab_size, self.model_config)
            self.build_inputs()
            self.build_initial_state()
            self.build_word_embeddings()
            self.build_rnn()
            self.build_logits()
            self.build_loss()

    def build_inputs(self):
        """Inputs: none.
        Outputs: img_embeds [B, H, W, D] (the CNN's feature grid; the name ``generate_batch`` feeds),
          features [B, L, F] (each location squeezed), sentences [B, T], dropout_rate [], dropout_seed [2].
        """
        depth = self.model_config.img_embed_size
        self.img_embeds = v1.placeholder(tf.float32, [None, None, None, depth], name="img_features")
        self.sentences = v1.placeholder(tf.int32, [None, None], name="sentences")
        self.dropout = Dropout(self.model_config)
        self.dropout_rate, self.dropout_seed = self.dropout.rate, self.dropout.seed
        self.features = squeeze_features(self.layers, self.img_embeds, self.dropout)  # [B, L, F]

    def build_initial_state(self):
        """Inputs: features.
        Outputs: h0, c0 [B, LSTM_UNITS] from the mean feature; projected_features [B, L, ATTENTION],
          the image's half of the attention scores, computed once for all words.
        """
        state = initial_state(self.layers, self.features)
        self.h0, self.c0 = state.h, state.c
        self.projected_features = self.layers.feature_projection(self.features)

    def build_word_embeddings(self):
        """Inputs: sentences.
        Outputs: word_embeds [B, T-1, WORD_EMBED] (every token but the last).
        """
        self.word_embeds = self.dropout(lookup_with_dense_gradient(self.layers.word_embed, self.sentences[:, :-1]))

    def build_rnn(self):
        """Inputs: word_embeds, h0, c0, features, projected_features.
        Outputs: hidden_states [B, T-1, LSTM_UNITS + F] (each word's [h; context], what the logits
          read), alphas [B, T-1, L] (where each word looked), betas [B, T-1].
        """
        words = tf.transpose(self.word_embeds, [1, 0, 2])                          # [T-1, B, E]
        steps = tf.shape(words)[0]

        def collect(dtype=tf.float32):
            return tf.TensorArray(dtype, size=steps)

        def one_word(t, state, outputs, alphas, betas):
            state, logits_input, alpha, beta = attention_step(self.layers, words[t], state, self.features,
                                                              self.projected_features)
            return t + 1, state, outputs.write(t, logits_input), alphas.write(t, alpha), betas.write(t, beta[:, 0])

        _, _, outputs, alphas, betas = v1.while_loop(
            lambda t, *_: t < steps, one_word,
            (tf.constant(0), LSTMState(c=self.c0, h=self.h0), collect(), collect(), collect()),
            name="attention_rnn")
        self.hidden_states = tf.transpose(outputs.stack(), [1, 0, 2])              # [B, T-1, U + D]
        self.alphas = tf.transpose(alphas.stack(), [1, 0, 2])                      # [B, T-1, L]
        self.betas = tf.transpose(betas.stack())                                   # [B, T-1]
        width = self.model_config.lstm_units + self.model_config.img_embed_bottleneck
        self.flat_hidden_states = tf.reshape(self.hidden_states, [-1, width])

    def build_logits(self):
        """Inputs: flat_hidden_states, sentences.
        Outputs: flat_loss_mask [B*(T-1)] (1.0 where the ground truth is not PAD), targets [N] (the
          non-PAD ground truth), logits_bottleneck [N, LOGIT_BOTTLENECK] (PAD positions never reach
          the loss, so their logits, the biggest matmul of a step, are not computed).
        """
        flat_ground_truth = tf.reshape(self.sentences[:, 1:], [-1])
        self.flat_loss_mask = tf.cast(tf.not_equal(flat_ground_truth, self.pad_idx), tf.float32)
        real = tf.reshape(tf.where(self.flat_loss_mask > 0), [-1])
        self.targets = tf.gather(flat_ground_truth, real)                             # [N]
        self.target_rows = real // tf.cast(tf.shape(self.sentences)[1] - 1, tf.int64)  # [N] caption of each
        hidden = tf.gather(self.flat_hidden_states, real)                            # [N, U + F]
        self.logits_bottleneck = self.layers.token_logits_bottleneck(self.dropout(hidden))

    def build_loss(self):
        """Inputs: logits_bottleneck, targets, flat_loss_mask, alphas.
        Outputs: cross_entropy [] (the course's masked mean), attention_penalty [], loss [] (their sum);
          caption_weights [B] (fed) and weighted_caption_loss [] (self-critical training's loss:
          ``capstone.fast.trainer.weighted_caption_loss``, no attention penalty).
        """
        token_logits = self.layers.token_logits
        xent = dense_softmax_cross_entropy(self.logits_bottleneck, token_logits.kernel, token_logits.bias,
                                           self.targets)                              # [N]
        self.cross_entropy = tf.reduce_sum(xent) / tf.maximum(tf.cast(tf.size(xent), tf.float32), 1.0)
        word_mask = tf.reshape(self.flat_loss_mask, tf.shape(self.alphas)[:2])       # [B, T-1]
        attention_per_location = tf.reduce_sum(self.alphas * word_mask[:, :, None], axis=1)  # [B, L]
        self.attention_penalty = tf.reduce_mean(tf.reduce_sum(tf.square(1.0 - attention_per_location), axis=1))
        self.loss = self.cross_entropy + self.model_config.attention_lambda * self.attention_penalty
        self.caption_weights, self.weighted_caption_loss = weighted_caption_loss(xent, self.target_rows,
                                                                                 self.sentences)
