"""Checks of the learner's decoder: shapes, variables, and every tensor recomputed with numpy.

The course checked shapes on 32 random embeddings and 32 x 20 uniformly random token ids, and
that the loss at random init is near ln(V). Nearly no PAD in such a feed and a loss that is
ln(V) whatever the mistake let a dozen wrong decoders through. Here:

* shapes: the course's feed, and the shape of every layer's variables (a skipped bottleneck
  changes them);
* values: a feed with realistic PAD tails and a PAD index that is not 0; h0, c0, word_embeds,
  flat_hidden_states, flat_token_logits, flat_ground_truth, flat_loss_mask are recomputed in
  numpy from the decoder's own variables, in the order the data flows, and the loss from the
  decoder's own flat_token_logits: the first tensor that differs names the mistake.
"""

import math

import numpy as np

from capstone.errors import CapstoneError
from capstone.grading.common import Mismatch

# The course's test feed for the decoder: 32 random embeddings and 32 x 20 random token ids.
COURSE_BATCH, COURSE_TIME = 32, 20
# The decoder tensors whose shapes the course checked, in its order.
DECODER_TENSORS = ("h0", "word_embeds", "flat_hidden_states", "flat_token_logits", "flat_ground_truth",
                   "flat_loss_mask", "loss")
# At random init the decoder's guess is nearly uniform, so the loss is close to ln(vocabulary size).
RANDOM_LOSS_RELATIVE_TOLERANCE = 0.1  # |loss - ln V| may be up to 10% of ln V (measured: < 0.3%)
# float32 graph vs float64 numpy: relative to the tensor's largest value (untrained logits are ~1e-3)
VALUE_TOLERANCE = 1e-4
LOSS_TOLERANCE = 1e-5  # relative; a float32 mean of ~600 cross-entropies is good to ~1e-7


def course_feed(decoder, img_embed_size, vocab_size, seed=0):
    """The course's test feed: img_embeds [32, IMG_EMBED] uniform in [0, 1), sentences [32, 20] random ids."""
    rng = np.random.default_rng(seed)
    return {decoder.img_embeds: rng.random((COURSE_BATCH, img_embed_size)).astype(np.float32),
            decoder.sentences: rng.integers(0, vocab_size, (COURSE_BATCH, COURSE_TIME)).astype(np.int32)}


def realistic_sentences(vocab_size, pad_idx, seed=1, batch=COURSE_BATCH, time=COURSE_TIME):
    """[batch, time] int32 captions of 3..time real tokens (any id but PAD, id 0 included) then PAD."""
    rng = np.random.default_rng(seed)
    tokens = np.array([t for t in range(vocab_size) if t != pad_idx])
    sentences = np.full((batch, time), pad_idx, np.int32)
    lengths = rng.integers(3, time + 1, batch)
    lengths[0] = time  # one caption without padding, as the longest of a batch
    for row, length in enumerate(lengths):
        sentences[row, :length] = rng.choice(tokens, length)
    return sentences


def decoder_sizes(decoder, config, vocab_size):
    """(config, vocab_size) given, or read from the decoder's ``.model_config`` (the package's
    ``Decoder``) or ``.config`` (the notebook's class) and ``.vocab_size``."""
    if config is None:
        config = getattr(decoder, "model_config", None) or getattr(decoder, "config", None)
    vocab_size = vocab_size if vocab_size is not None else getattr(decoder, "vocab_size", None)
    if config is None or vocab_size is None:
        raise CapstoneError("grading: this decoder has no .config/.vocab_size; pass config=ModelConfig(...) "
                            "with your sizes and vocab_size=len(vocab)")
    return config, vocab_size


def expected_decoder_shapes(config, vocab_size):
    """Shapes of DECODER_TENSORS for the course feed."""
    rows = COURSE_BATCH * (COURSE_TIME - 1)  # every token but the last is an input: 608 positions
    return {
        "h0": (COURSE_BATCH, config.lstm_units),
        "word_embeds": (COURSE_BATCH, COURSE_TIME - 1, config.word_embed_size),
        "flat_hidden_states": (rows, config.lstm_units),
        "flat_token_logits": (rows, vocab_size),
        "flat_ground_truth": (rows,),
        "flat_loss_mask": (rows,),
        "loss": (),
    }


def expected_variable_shapes(config, vocab_size):
    """{(layer, variable): shape} of the course's six layers."""
    c = config
    return {
        ("img_embed_to_bottleneck", "kernel"): (c.img_embed_size, c.img_embed_bottleneck),
        ("img_embed_to_bottleneck", "bias"): (c.img_embed_bottleneck,),
        ("img_embed_bottleneck_to_h0", "kernel"): (c.img_embed_bottleneck, c.lstm_units),
        ("img_embed_bottleneck_to_h0", "bias"): (c.lstm_units,),
        ("word_embed", "embeddings"): (vocab_size, c.word_embed_size),
        ("lstm", "input_kernel"): (c.word_embed_size, 4 * c.lstm_units),
        ("lstm", "recurrent_kernel"): (c.lstm_units, 4 * c.lstm_units),
        ("lstm", "bias"): (4 * c.lstm_units,),
        ("token_logits_bottleneck", "kernel"): (c.lstm_units, c.logit_bottleneck),
        ("token_logits_bottleneck", "bias"): (c.logit_bottleneck,),
        ("token_logits", "kernel"): (c.logit_bottleneck, vocab_size),
        ("token_logits", "bias"): (vocab_size,),
    }


def _variable(decoder, layer, name):
    return getattr(getattr(decoder, layer, None), name, None)


def _variable_shape(decoder, layer, name):
    variable = _variable(decoder, layer, name)
    if variable is None:
        return "not created (the layer was never called)"
    return tuple(variable.shape.as_list())


def _run_shape(session, tensor, feed):
    """The shape of one evaluated tensor, or a short error text."""
    import tensorflow as tf

    try:
        return tuple(np.shape(session.run(tensor, feed)))
    except (tf.errors.OpError, ValueError, TypeError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"error: {type(error).__name__}: {text[:120]}"


def check_decoder_shapes(decoder, session, config, vocab_size):
    config, vocab_size = decoder_sizes(decoder, config, vocab_size)
    feed = course_feed(decoder, config.img_embed_size, vocab_size)
    expected = expected_decoder_shapes(config, vocab_size)
    received = {name: _run_shape(session, getattr(decoder, name), feed) if getattr(decoder, name, None) is not None
                else "missing" for name in DECODER_TENSORS}  # one run per tensor: one error hides no other
    wrong = [f"{name}: expected {expected[name]}, received {received[name]}"
             for name in DECODER_TENSORS if received[name] != expected[name]]
    if wrong:
        raise Mismatch(expected, received, "; ".join(wrong))
    variables = expected_variable_shapes(config, vocab_size)
    got = {key: _variable_shape(decoder, *key) for key in variables}
    wrong = [f"{layer}.{name}: expected {variables[layer, name]}, received {got[layer, name]}"
             for layer, name in variables if got[layer, name] != variables[layer, name]]
    if wrong:
        hint = ("each layer is used once, in the course's order: img_embeds -> img_embed_to_bottleneck -> "
                "img_embed_bottleneck_to_h0 -> h0; hidden states -> token_logits_bottleneck -> token_logits")
        raise Mismatch(expected, {f"{k[0]}.{k[1]}": v for k, v in got.items()}, "; ".join(wrong) + f"; {hint}")
    return expected, received, f"all {len(DECODER_TENSORS)} tensors and {len(variables)} variables have the course's shapes"


# ---------------------------------------------------------------------------------------------
# numpy: the course's graph, computed from the decoder's own variables


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_step(weights, x, c, h, forget_bias=1.0):
    """TF1's LSTMCell (gates i, j, f, o) in numpy -> (c', h')."""
    gates = x @ weights["lstm.input_kernel"] + h @ weights["lstm.recurrent_kernel"] + weights["lstm.bias"]
    i, j, f, o = np.split(gates, 4, axis=1)
    c = sigmoid(f + forget_bias) * c + sigmoid(i) * np.tanh(j)
    return c, sigmoid(o) * np.tanh(c)


def log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def masked_mean_xent(logits, targets, mask):
    """The course's loss in numpy: mean cross-entropy over the positions where mask is 1."""
    logits = np.asarray(logits, np.float64)
    xent = -log_softmax(logits)[np.arange(len(targets)), targets]
    return float(np.sum(xent * mask) / max(np.sum(mask), 1.0)), xent


def reference_forward(weights, img_embeds, sentences, pad_idx):
    """Every course tensor from numpy: {name: value}."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    bottleneck = elu(img_embeds @ w["img_embed_to_bottleneck.kernel"] + w["img_embed_to_bottleneck.bias"])
    h0 = elu(bottleneck @ w["img_embed_bottleneck_to_h0.kernel"] + w["img_embed_bottleneck_to_h0.bias"])
    word_embeds = w["word_embed.embeddings"][sentences[:, :-1]]
    c, h, hidden = h0, h0, []
    for step in range(word_embeds.shape[1]):
        c, h = lstm_step(w, word_embeds[:, step], c, h)
        hidden.append(h)
    hidden_states = np.stack(hidden, axis=1)                                   # [B, T-1, UNITS]
    flat_hidden = hidden_states.reshape(-1, hidden_states.shape[-1])
    logits_bottleneck = elu(flat_hidden @ w["token_logits_bottleneck.kernel"] + w["token_logits_bottleneck.bias"])
    ground_truth = sentences[:, 1:].reshape(-1)
    return {"h0": h0, "c0": h0, "word_embeds": word_embeds, "hidden_states": hidden_states,
            "flat_hidden_states": flat_hidden,
            "flat_token_logits": logits_bottleneck @ w["token_logits.kernel"] + w["token_logits.bias"],
            "flat_ground_truth": ground_truth, "flat_loss_mask": (ground_truth != pad_idx).astype(np.float64)}


def _close(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.abs(b).max()) if b.size else 0.0
    return a.shape == b.shape and np.allclose(a, b, rtol=VALUE_TOLERANCE, atol=VALUE_TOLERANCE * scale + 1e-7)


def _value_hint(name, got, want, sentences, pad_idx, forward):
    """The likely mistake when tensor ``name`` differs from the course's."""
    got = np.asarray(got)
    if name == "h0":
        return "h0 = c0 = img_embed_bottleneck_to_h0(img_embed_to_bottleneck(img_embeds))"
    if name == "c0":
        return "the course starts the LSTM from the image in both halves of its state: c0 = h0 (not zeros)"
    if name == "word_embeds":
        return "embed every token but the last: word_embed(sentences[:, :-1])"
    if name == "flat_hidden_states":
        time_major = np.transpose(forward["hidden_states"], (1, 0, 2)).reshape(want.shape)
        if _close(got, time_major):
            return "flatten batch-major: tf.reshape(hidden_states, [-1, LSTM_UNITS]), without transposing first"
        return "tf.reshape(hidden_states, [-1, LSTM_UNITS]) of the LSTM run from (c0, h0)"
    if name == "flat_token_logits":
        probs = np.exp(log_softmax(want))
        if _close(got, probs):
            return "these are logits: no softmax here (sparse_softmax_cross_entropy_with_logits applies it)"
        return "flat_token_logits = token_logits(token_logits_bottleneck(flat_hidden_states))"
    if name == "flat_ground_truth":
        if got.shape == want.shape and np.array_equal(got, sentences[:, :-1].reshape(-1)):
            return "the target of each input is the next token: sentences[:, 1:], not sentences[:, :-1]"
        return "flat_ground_truth = tf.reshape(sentences[:, 1:], [-1])"
    if name == "flat_loss_mask":
        if got.shape == want.shape and np.array_equal(got, 1 - want):
            return "the mask is 1.0 for real tokens and 0.0 for PAD (it is inverted)"
        if got.shape == want.shape and np.array_equal(got, (forward["flat_ground_truth"] != 0).astype(float)):
            return f"compare with the decoder's pad_idx ({pad_idx}), not with 0"
        return "flat_loss_mask = tf.cast(tf.not_equal(flat_ground_truth, pad_idx), tf.float32)"
    return ""


def check_decoder_values(decoder, session, config, vocab_size, realistic=None):
    """Every tensor on a feed with PAD tails vs numpy, then the loss, then loss ~ ln V."""
    import tensorflow as tf

    config, vocab_size = decoder_sizes(decoder, config, vocab_size)
    expected_loss = round(math.log(vocab_size), 4)
    pad_idx = getattr(decoder, "pad_idx", None)
    if pad_idx is None:
        raise CapstoneError("grading: the decoder has no .pad_idx")
    sentences = realistic if realistic is not None else realistic_sentences(vocab_size, pad_idx)
    rng = np.random.default_rng(2)
    img_embeds = rng.random((len(sentences), config.img_embed_size)).astype(np.float32)
    feed = {decoder.img_embeds: img_embeds, decoder.sentences: sentences}
    shapes = expected_variable_shapes(config, vocab_size)
    variables = {f"{layer}.{name}": _variable(decoder, layer, name) for layer, name in shapes}
    missing = [key for key, variable in variables.items() if variable is None]
    if missing:
        raise Mismatch(expected_loss, f"no {missing[0]}", f"{missing[0]} was never created: use every one of the "
                                                         f"course's layers (see the shapes part)")
    names = ("h0", "c0", "word_embeds", "flat_hidden_states", "flat_token_logits", "flat_ground_truth",
             "flat_loss_mask", "loss")
    try:
        got, weights = session.run(({n: getattr(decoder, n) for n in names}, variables), feed)
    except (tf.errors.OpError, ValueError, TypeError, AttributeError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Mismatch(expected_loss, type(error).__name__, f"running the decoder on captions with PAD tails failed: "
                                                            f"{text[:200]} (is the shapes part passing?)") from None
    forward = reference_forward(weights, img_embeds.astype(np.float64), sentences, pad_idx)
    for name in names[:-1]:
        want = forward[name]
        if not _close(got[name], want):
            received = np.asarray(got[name])
            raise Mismatch(f"{name} {want.shape}", f"{name} {received.shape}",
                           f"{name} differs from the course's graph recomputed in numpy from your variables "
                           f"(on captions with PAD tails, pad_idx={pad_idx}): first values expected "
                           f"{np.round(want.ravel()[:4], 4).tolist()}, received "
                           f"{np.round(received.ravel()[:4], 4).tolist()}; "
                           f"{_value_hint(name, got[name], want, sentences, pad_idx, forward)}")
    # Untrained logits are nearly uniform, so every position's cross-entropy is nearly ln V and a
    # loss that forgets the mask would still come out right. Feeding flat_token_logits with
    # spread-out logits makes every position count differently.
    fed_logits = rng.normal(0.0, 3.0, np.shape(got["flat_token_logits"])).astype(np.float32)
    try:
        fed_loss = session.run(decoder.loss, {**feed, decoder.flat_token_logits: fed_logits})
    except (tf.errors.OpError, ValueError, TypeError):
        fed_loss = None  # not feedable: the decoder's own logits below still check the formula
    checks = [(got["loss"], got["flat_token_logits"], "")]
    if fed_loss is not None:
        checks.append((fed_loss, fed_logits, " with flat_token_logits fed random logits (std 3)"))
    for value, logits, how in checks:
        loss = np.asarray(value, np.float64)
        wanted, xent = masked_mean_xent(logits, forward["flat_ground_truth"], forward["flat_loss_mask"])
        if loss.shape != () or not math.isclose(float(loss), wanted, rel_tol=LOSS_TOLERANCE, abs_tol=LOSS_TOLERANCE):
            raise Mismatch(round(wanted, 4), np.round(loss, 4).tolist(), _loss_hint(loss, wanted, xent, forward, how))
    loss = np.asarray(got["loss"], np.float64)
    received = round(float(loss), 4)
    tolerance = RANDOM_LOSS_RELATIVE_TOLERANCE * expected_loss
    if not abs(received - expected_loss) <= tolerance:
        raise Mismatch(expected_loss, received, f"before training the loss should be close to ln({vocab_size}) = "
                                                f"{expected_loss:.3f} (within {tolerance:.2f}), received {received}: "
                                                f"are the variables freshly initialised?")
    return expected_loss, received, (f"every tensor matches numpy on captions with PAD tails; loss {received:.3f} = "
                                     f"the masked mean cross-entropy, within {tolerance:.2f} of ln({vocab_size})")


def _loss_hint(loss, wanted, xent, forward, how=""):
    mask = forward["flat_loss_mask"]
    head = f"loss{how}: expected {wanted:.4f} (mean cross-entropy over the non-PAD tokens), received "
    if loss.shape != ():
        return head + f"shape {loss.shape}: reduce to one number"
    value = float(loss)
    candidates = {
        "a plain mean over all positions, PAD included: multiply by flat_loss_mask": xent.mean(),
        "the masked sum divided by every position: divide by tf.reduce_sum(flat_loss_mask)": np.sum(xent * mask) / len(xent),
        "a sum: divide by the number of real tokens, tf.reduce_sum(flat_loss_mask)": np.sum(xent * mask),
        "the loss of the PAD positions: the mask should keep the real tokens": np.sum(xent * (1 - mask)) / max(np.sum(1 - mask), 1),
    }
    for text, candidate in candidates.items():
        if math.isclose(value, candidate, rel_tol=LOSS_TOLERANCE, abs_tol=LOSS_TOLERANCE):
            return head + f"{value:.4f}, which is {text}"
    return head + (f"{value:.4f}: xent = sparse_softmax_cross_entropy_with_logits(labels=flat_ground_truth, "
                   f"logits=flat_token_logits) (logits, not probabilities); loss = sum(xent * mask) / sum(mask)")
