"""Show, Attend and Tell's layers, and the one step every attention graph runs.

Xu et al. 2015, soft attention: at every word the LSTM looks at the L locations of the CNN's
last feature map (7 x 7 = 49 for EfficientNet-Lite0 at 224 px, 8 x 8 = 64 for InceptionV3 at 299)
and takes their average weighted by how relevant each one is to what it is about to say. Each
location's D-d feature is first squeezed to IMG_EMBED_BOTTLENECK (the course's image bottleneck,
here per location: it makes every step several times cheaper than working on 1280-d features):

    f_l   = feature_bottleneck(cnn feature l)  [B, L, F]
    e_l   = v . tanh(W_f f_l + W_h h)          (attention_score, feature_projection, hidden_projection)
    alpha = softmax(e)                          [B, L], >= 0, sums to 1: where the model looks
    beta  = sigmoid(w . h + b)                  (gate): how much of the image this word needs
    z     = beta * sum_l alpha_l f_l            [B, F], the context
    h', c' = LSTM([word vector; z], (h, c))
    logits = token_logits(token_logits_bottleneck([h'; z]))

The initial state comes from the mean feature: h0 = tanh(init_h(mean f)), c0 = tanh(init_c(mean f)).
All layers are ``capstone.layers`` (tf.compat.v1.get_variable), none from Keras.
"""

import collections

import tensorflow as tf

from capstone.fast.decoding import token_logits
from capstone.layers import Dense, Embedding, LSTMCell, LSTMState

AttentionLayers = collections.namedtuple("AttentionLayers", [
    "feature_bottleneck",                                    # CNN feature of a location -> F
    "init_h", "init_c",                                      # mean feature -> initial state
    "feature_projection", "hidden_projection", "attention_score",  # where to look
    "gate",                                                  # beta: how much to look
    "word_embed", "lstm", "token_logits_bottleneck", "token_logits",
])


def make_attention_layers(vocab_size, config):
    """The attention decoder's layers, their variables created now, in this order (see
    ``capstone.decoder.make_layers``: a seed gives the same weights whichever graph is built)."""
    features, units = config.img_embed_bottleneck, config.lstm_units
    layers = AttentionLayers(
        feature_bottleneck=Dense(features, activation="elu", name="feature_bottleneck"),
        init_h=Dense(units, activation="tanh", name="init_h"),
        init_c=Dense(units, activation="tanh", name="init_c"),
        feature_projection=Dense(config.attention_units, name="feature_projection"),
        hidden_projection=Dense(config.attention_units, name="hidden_projection"),
        attention_score=Dense(1, name="attention_score"),
        gate=Dense(1, activation="sigmoid", name="gate"),
        word_embed=Embedding(vocab_size, config.word_embed_size, name="word_embed"),
        lstm=LSTMCell(units, name="lstm"),
        token_logits_bottleneck=Dense(config.logit_bottleneck, activation="elu", name="token_logits_bottleneck"),
        token_logits=Dense(vocab_size, name="token_logits"),
    )
    layers.feature_bottleneck.build(config.img_embed_size)
    layers.init_h.build(features)
    layers.init_c.build(features)
    layers.feature_projection.build(features)
    layers.hidden_projection.build(units)
    layers.attention_score.build(config.attention_units)
    layers.gate.build(units)
    layers.word_embed.build()
    layers.lstm.build(config.word_embed_size + features)
    layers.token_logits_bottleneck.build(units + features)
    layers.token_logits.build(config.logit_bottleneck)
    return layers


def flatten_locations(img_features):
    """[B, H, W, D] (or already [B, L, D]) -> [B, L, D]: the grid read row by row."""
    if img_features.shape.ndims == 3:
        return img_features
    shape = tf.shape(img_features)
    return tf.reshape(img_features, [shape[0], shape[1] * shape[2], img_features.shape[-1]])


def squeeze_features(layers, img_features, dropout=None):
    """CNN features [B, H, W, D] -> [B, L, F], what attention works on."""
    features = flatten_locations(img_features)
    return layers.feature_bottleneck(dropout(features) if dropout else features)


def initial_state(layers, features):
    """features [B, L, F] -> LSTMState(c0, h0) [B, LSTM_UNITS] from the mean feature."""
    mean = tf.reduce_mean(features, axis=1)                                     # [B, D]
    return LSTMState(c=layers.init_c(mean), h=layers.init_h(mean))


def attend(layers, features, projected, h):
    """Where to look. features [B, L, F], projected = feature_projection(features) [B, L, A]
    (computed once per image), h [B, U] -> (context [B, F], alpha [B, L], beta [B, 1])."""
    scores = layers.attention_score(tf.tanh(projected + layers.hidden_projection(h)[:, None, :]))  # [B, L, 1]
    alpha = tf.nn.softmax(scores[:, :, 0])                                       # [B, L]
    beta = layers.gate(h)                                                        # [B, 1]
    context = beta * tf.squeeze(tf.matmul(alpha[:, None, :], features), 1)       # [B, F]
    return context, alpha, beta


def attention_step(layers, word_vectors, state, features, projected):
    """One word: (word vectors [B, E], LSTMState) -> (new LSTMState, logits input [B, U + F], alpha, beta)."""
    context, alpha, beta = attend(layers, features, projected, state.h)
    new_h, new_state = layers.lstm(tf.concat([word_vectors, context], axis=1), state)
    return new_state, tf.concat([new_h, context], axis=1), alpha, beta


def attention_step_for(layers, features):
    """``step_for`` of ``capstone.fast.decoding``: features [B, L, F] of the B images; the step for
    ``rows_per_image`` rows per image (beam slots) reads each row's image from a tiled copy, made
    once, since rows never move between images. ``allowed``: as ``show_and_tell_step``'s."""
    def step_for(rows_per_image, allowed=None):
        tiled = features if rows_per_image == 1 else tf.repeat(features, rows_per_image, axis=0)
        projected = layers.feature_projection(tiled)                             # [rows, L, A]

        def step(words, state):
            new_state, logits_input, alpha, _ = attention_step(layers, layers.word_embed(words), state, tiled,
                                                               projected)
            logits = token_logits(layers.token_logits, layers.token_logits_bottleneck(logits_input),
                                  allowed)                                         # [rows, vocab]
            return logits, new_state, alpha
        return step
    return step_for
