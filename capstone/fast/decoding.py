"""Captions inside the graph: greedy, sampled and beam search, one Session.run for a whole batch.

Asking TensorFlow for one word at a time from Python costs far more than the arithmetic of one
LSTM step (copying the state in and out, scheduling the ops), and beam search would pay it once
per word *per image*. Here the loops are ``tf.compat.v1.while_loop``s, so a batch of images is
captioned in one call, with the state staying inside TensorFlow. This is the only decoding code
of the package; tests/decoding_oracle.py keeps plain Python loops over ``FinalModel.one_step`` that
the tests check these against (same greedy tokens, same beams).

Every loop calls a step function (``show_and_tell_step``, or the attention decoder's
``attention_step_for``), the very step ``FinalModel.one_step`` runs. Words in
``banned`` (PAD, UNK, START) are never chosen: a caption never says "#UNK#", and never drops one.
"""

import collections

import numpy as np
import tensorflow as tf

from capstone.fast.repeat_blocking import allowed_next, without_repeats
from capstone.support.precision import FLOAT32, graph_precision

v1 = tf.compat.v1
REFINED_LOGITS = 4  # bfloat16 graphs: this many of the largest logits are recomputed in float32


def token_logits(dense, x, allowed=None):
    """The vocabulary logits ``dense(x)`` [N, vocab] from which a word is chosen.

    allowed [vocab] bool or None: with it, the words it rules out get the logit -inf, through
    the bias (-inf there), so no pass over [N, vocab] is spent on them: the bias rides in the
    product's fused kernel. Greedy decoding's words then come out of one argmax.

    In a bfloat16 graph the product comes back rounded to bfloat16 (8 bits of mantissa: steps of
    0.06 for logits near 10), enough to swap two close candidates and, from that word on, the rest
    of the caption. So the REFINED_LOGITS largest are recomputed in float32 ([N, K] . [K, 4]: a few
    hundred multiply-adds a row) and put back: the word chosen is float32's whenever float32's best
    is among bfloat16's top 4. Measured on Flickr8k (300 test photos): identical greedy captions
    76 % -> 97 %. In a float32 graph this is ``dense(x)``.
    """
    if dense.kernel is None:
        dense.build(int(x.shape[-1]))
    bias = dense.bias if allowed is None else tf.where(allowed, dense.bias, -np.inf)   # [vocab]
    logits = dense(x, bias=bias)                                         # [N, vocab]
    if graph_precision() == FLOAT32:
        return logits
    _, top = tf.math.top_k(logits, k=min(REFINED_LOGITS, dense.units))   # [N, k] token ids
    columns = tf.gather(dense.kernel, top, axis=1)                       # [K, N, k]
    exact = tf.einsum("nK,Knk->nk", x, columns) + tf.gather(bias, top)
    rows = tf.broadcast_to(tf.range(tf.shape(top)[0])[:, None], tf.shape(top))
    return tf.tensor_scatter_nd_update(logits, tf.stack([rows, top], axis=-1), exact)


def next_word_logits(layers, words, state, allowed=None):
    """One decoder step for N rows.

    Reads words [N] int32 and state LSTMState(c, h) [N, LSTM_UNITS]; uses the layers of
    ``capstone.decoder.make_layers``. Returns (logits [N, vocab] float32, new LSTMState);
    ``token_logits`` says what ``allowed`` does.
    """
    word_embeds = layers.word_embed(words)                               # [N, WORD_EMBED]
    new_h, new_state = layers.lstm(word_embeds, state)                   # [N, LSTM_UNITS]
    return token_logits(layers.token_logits, layers.token_logits_bottleneck(new_h), allowed), new_state


def show_and_tell_step(layers):
    """``step_for`` of the course decoder: a step function for any number of rows per image.

    ``step_for(rows_per_image, allowed=None)`` is ``step(words [N], state) -> (logits [N, vocab],
    new state, weights [N, 0])``: logits, not probabilities, because greedy decoding and sampling
    need no softmax (a pass over every row's whole vocabulary at every word); -inf for the words
    ``allowed`` [vocab] bool rules out (``token_logits``). The course decoder looks at no image
    location, so its attention weights are empty.
    """
    def step_for(rows_per_image, allowed=None):
        def step(words, state):
            logits, new_state = next_word_logits(layers, words, state, allowed)
            return logits, new_state, tf.zeros([tf.shape(words)[0], 0])
        return step
    return step_for


def allowed_tokens(vocab_size, banned):
    """[vocab] bool constant: False for the tokens that may never be emitted (PAD, UNK, START)."""
    allowed = np.ones(vocab_size, dtype=bool)
    allowed[list(banned)] = False
    return tf.constant(allowed)


def greedy_decode(step_for, init_state, vocab_size, start_idx, end_idx, banned, max_len, sample=False,
                  temperature=1.0, seed=(0, 0), no_repeat_ngram=0):
    """The most probable word at every step (or one drawn at a temperature), for every row at once.

    Inputs: step_for (``show_and_tell_step`` or the attention decoder's): step_for(1) is the step
      function; init_state: the decoder's state for B images (any nest of [B, ...] tensors);
      max_len [] int32; sample [] bool; temperature [] float32; seed [2] int64 (the draws are a
      function of seed and step); no_repeat_ngram [] int32: no n-gram of this many words twice in a
      caption (0: no such rule; ``capstone.fast.repeat_blocking``).
    Outputs: (tokens [B, steps] int32, lengths [B] int32, weights [B, steps, L] float32). Row b's
      caption is tokens[b, :lengths[b]]: its words up to and including its first END; weights
      are the attention weights over L image locations behind each word (L = 0 without attention).
      The loop stops when every row has said END or after max_len words, so steps <= max_len.

    Finished rows keep being computed (the batch never changes shape), so every row's tokens
    are what it would get alone. The course's temperature, p ** (1 / t) renormalised, is a
    softmax of log(p) / t; it cannot change which word is the most probable.
    """
    step_fn = step_for(1, allowed_tokens(vocab_size, banned))          # banned words: logit -inf
    batch = tf.shape(tf.nest.flatten(init_state)[0])[0]
    sample, seed = tf.convert_to_tensor(sample, tf.bool), tf.cast(seed, tf.int64)

    def keep_going(step, words, state, done, lengths, history, weights):
        return tf.logical_and(step < max_len, tf.logical_not(tf.reduce_all(done)))

    def one_word(step, words, state, done, lengths, history, weights):
        logits, state, step_weights = step_fn(words, state)                       # [B, vocab], [B, L]
        def so_far():  # [B, step]: the words so far, read only where a repeat is possible
            return tf.transpose(history.stack())

        logits = without_repeats(logits, so_far, step, no_repeat_ngram)
        # The softmax is left out: it changes neither the largest logit nor, up to a constant per
        # row that the draw ignores, log p / temperature.
        words = tf.cond(
            sample,
            lambda: tf.cast(tf.random.stateless_categorical(
                logits / temperature, 1, seed=seed + [0, tf.cast(step, tf.int64)])[:, 0], tf.int32),
            lambda: tf.argmax(logits, axis=1, output_type=tf.int32))              # [B]
        lengths += tf.cast(tf.logical_not(done), tf.int32)  # rows that ended keep their length
        done = tf.logical_or(done, tf.equal(words, end_idx))
        return step + 1, words, state, done, lengths, history.write(step, words), weights.write(step, step_weights)

    start = (
        tf.constant(0),
        tf.fill([batch], tf.constant(start_idx, tf.int32)),
        init_state,
        tf.zeros([batch], tf.bool),
        tf.zeros([batch], tf.int32),
        tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=tf.TensorShape([None])),
        tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=tf.TensorShape([None, None])),
    )
    _, _, _, _, lengths, history, weights = v1.while_loop(keep_going, one_word, start, name="greedy_decode")
    return tf.transpose(history.stack()), lengths, tf.transpose(weights.stack(), [1, 0, 2])


# What the beam-search loop carries from word to word, per image b and beam slot k.
Beams = collections.namedtuple("Beams", [
    "words",        # [B*K] int32: each slot's last word (the next LSTM input)
    "state",        # the decoder's state, rows [B*K] (LSTMState, or more for attention)
    "done",         # [B] bool: the image's search has ended
    "open_scores",  # [B, K] float64: sum of log probs of each open beam, -inf for an empty slot
    "open_tokens",  # [B, K, max_len] int32: the open beams' words so far
    "open_length",  # [B] int32: words in every open beam of the image
    "open_weights",  # [B, K, max_len, L] float32: attention weights behind each word (L = 0: none)
    "fin_scores",   # [B, K] float64: the K best finished captions' length-normalised scores
    "fin_tokens",   # [B, K, max_len] int32
    "fin_lengths",  # [B, K] int32
    "fin_weights",  # [B, K, max_len, L] float32
])


def beam_decode(step_for, init_state, vocab_size, start_idx, end_idx, banned, beam_size, max_len, length_alpha,
                n_weights=0, no_repeat_ngram=0):
    """Length-normalised beam search for every image of a batch in one while loop.

    Inputs: step_for: step_for(K) is the step function for rows b * K + slot; init_state: the
      decoder's state for B images (any nest of [B, ...]); beam_size [] int32, max_len [] int32 and
      length_alpha [] float64 tensors; n_weights: L, the image locations a step attends to (0: none);
      no_repeat_ngram [] int32: no n-gram of this many words twice in a caption (0: no such rule).
    Outputs: (tokens [B, K, max_len] int32, lengths [B, K] int32, scores [B, K] float64,
      weights [B, K, max_len, L] float32), the K = beam_size best captions of each image, best
      first: tokens[b, k, :lengths[b, k]] without START/END, score = sum(log p) / (length + 1) **
      length_alpha, and the attention weights behind each word. Where an image has fewer than
      K captions (a tiny vocabulary) the missing ones score -inf.

    Every image keeps K beam slots (rows b * K + slot of the LSTM state). Slots that hold no beam
    score -inf, so no candidate grows from them, as if they did not exist. An image stops (its
    slots freeze) when its best open beam cannot beat its K-th finished caption any more.
    """
    batch, k = tf.shape(tf.nest.flatten(init_state)[0])[0], beam_size
    minus_inf = tf.constant(-np.inf, tf.float64)
    alpha = tf.cast(length_alpha, tf.float64)
    allowed = allowed_tokens(vocab_size, banned)[None]                  # [1, vocab]
    step_fn = step_for(k)

    def keep_going(t, beams):
        return tf.logical_and(t < max_len, tf.logical_not(tf.reduce_all(beams.done)))

    def one_word(t, beams):
        logits, new_state, step_weights = step_fn(beams.words, beams.state)             # [B*K, vocab], [B*K, L]
        def so_far():  # [B*K, max_len]: each slot's words so far
            return tf.reshape(beams.open_tokens, [batch * k, -1])

        allowed_now = allowed_next(allowed, so_far, t, no_repeat_ngram)                 # [B*K or 1, vocab]
        cand = best_candidates(tf.where(allowed_now, tf.nn.softmax(logits), -1.0), beams.open_scores, k)
        ends = tf.logical_and(cand.finite, tf.equal(cand.words, end_idx))
        opens = tf.logical_and(cand.finite, tf.not_equal(cand.words, end_idx))
        cand_tokens = tf.gather(beams.open_tokens, cand.slots, batch_dims=1)          # [B, 2K, max_len]
        at_t = tf.equal(tf.range(tf.shape(beams.open_tokens)[2]), t)                   # [max_len]
        step_weights = tf.reshape(step_weights, [batch, k, 1, n_weights])              # [B, K, 1, L]
        with_step = tf.where(at_t[None, None, :, None], step_weights, beams.open_weights)  # [B, K, max_len, L]
        cand_weights = tf.gather(with_step, cand.slots, batch_dims=1)                  # [B, 2K, max_len, L]

        # Captions that end now (t + 1 words, END included) join the finished ones; only the K
        # best can ever be returned.
        end_scores = tf.where(ends, cand.scores / tf.cast(t + 1, tf.float64) ** alpha, minus_inf)
        fin_scores, (fin_tokens, fin_lengths, fin_weights) = best_k(
            tf.concat([beams.fin_scores, end_scores], 1), k, tf.concat([beams.fin_tokens, cand_tokens], 1),
            tf.concat([beams.fin_lengths, tf.fill(tf.shape(cand.words), t)], 1),
            tf.concat([beams.fin_weights, cand_weights], 1))

        # The first K candidates that go on become the next beams.
        position = tf.range(2 * k)[None]                                                 # [1, 2K]
        _, pick = tf.math.top_k(-tf.where(opens, position, position + 2 * k), k)         # [B, K]
        next_valid = tf.gather(opens, pick, batch_dims=1)
        next_scores = tf.where(next_valid, tf.gather(cand.scores, pick, batch_dims=1), minus_inf)
        next_slot = tf.gather(cand.slots, pick, batch_dims=1)
        next_word = tf.gather(cand.words, pick, batch_dims=1)
        next_tokens = tf.where(at_t[None, None], next_word[:, :, None],
                               tf.gather(beams.open_tokens, next_slot, batch_dims=1))
        next_weights = tf.gather(with_step, next_slot, batch_dims=1)

        # Stop an image when its best open beam cannot beat its K-th finished caption, or when
        # nothing goes on.
        count = tf.reduce_sum(tf.cast(tf.math.is_finite(fin_scores), tf.int32), 1)      # [B]
        best_open = tf.reduce_max(next_scores, 1) / tf.cast(max_len + 1, tf.float64) ** alpha
        stop = tf.logical_or(tf.logical_and(count >= k, best_open <= fin_scores[:, -1]),
                             tf.logical_not(tf.reduce_any(next_valid, 1)))

        active = tf.logical_not(beams.done)         # images still searching before this word
        go_on = tf.logical_and(active, tf.logical_not(stop))
        go_on_rows = tf.repeat(go_on, k)            # [B*K]: each image's flag for its slots' rows
        parent_rows = tf.reshape(tf.range(batch)[:, None] * k + next_slot, [-1])        # [B*K]
        state = tf.nest.map_structure(
            lambda new, old: tf.where(tf.reshape(go_on_rows, [-1] + [1] * (len(old.shape) - 1)),
                                      tf.gather(new, parent_rows), old), new_state, beams.state)
        return t + 1, Beams(
            words=tf.where(go_on_rows, tf.reshape(next_word, [-1]), beams.words),
            state=state,
            done=tf.logical_or(beams.done, stop),
            open_scores=tf.where(go_on[:, None], next_scores, beams.open_scores),
            open_tokens=tf.where(go_on[:, None, None], next_tokens, beams.open_tokens),
            open_length=tf.where(go_on, beams.open_length + 1, beams.open_length),
            open_weights=tf.where(go_on[:, None, None, None], next_weights, beams.open_weights),
            fin_scores=tf.where(active[:, None], fin_scores, beams.fin_scores),
            fin_tokens=tf.where(active[:, None, None], fin_tokens, beams.fin_tokens),
            fin_lengths=tf.where(active[:, None], fin_lengths, beams.fin_lengths),
            fin_weights=tf.where(active[:, None, None, None], fin_weights, beams.fin_weights),
        )

    first = first_beams(init_state, start_idx, k, max_len, n_weights)
    invariants = tf.nest.map_structure(lambda x: tf.TensorShape([None] * (len(x.shape) - 1) + [x.shape[-1]]), first)
    _, final = v1.while_loop(keep_going, one_word, (tf.constant(0), first),
                             shape_invariants=(tf.TensorShape([]), invariants), name="beam_decode")
    return finish(final, k, alpha)


def first_beams(init_state, start_idx, k, max_len, n_weights):
    """Before the first word each image has one beam (slot 0, empty, log prob 0) and nothing finished."""
    batch = tf.shape(tf.nest.flatten(init_state)[0])[0]
    minus_inf = tf.constant(-np.inf, tf.float64)
    first_slot = tf.equal(tf.range(k), 0)[None]                                          # [1, K]
    return Beams(
        words=tf.fill([batch * k], tf.constant(start_idx, tf.int32)),
        state=tf.nest.map_structure(lambda s: tf.repeat(s, k, axis=0), init_state),      # rows [B*K]
        done=tf.zeros([batch], tf.bool),
        open_scores=tf.where(first_slot, tf.zeros([batch, k], tf.float64), minus_inf),
        open_tokens=tf.fill([batch, k, max_len], -1),
        open_length=tf.zeros([batch], tf.int32),
        open_weights=tf.zeros([batch, k, max_len, n_weights]),
        fin_scores=minus_inf * tf.ones([batch, k], tf.float64),
        fin_tokens=tf.fill([batch, k, max_len], -1),
        fin_lengths=tf.zeros([batch, k], tf.int32),
        fin_weights=tf.zeros([batch, k, max_len, n_weights]),
    )


Candidates = collections.namedtuple("Candidates", ["scores", "slots", "words", "finite"])


def best_candidates(probs, open_scores, k):
    """The 2K best one-word continuations of each image's open beams, best first.

    probs [B*K, vocab] (banned words: -1); open_scores [B, K]. Returns Candidates of [B, 2K]:
    total log prob (float64), the slot it grows from, its word, and whether it is a real one.
    An image's 2K best continuations can only use each slot's own 2K most probable words, so
    the scores are computed for those alone. Among equal totals the lower slot, then the lower
    word comes first (the order of the Python oracle's flat index slot * vocab + word).
    """
    batch = tf.shape(open_scores)[0]
    minus_inf = tf.constant(-np.inf, tf.float64)
    per_row = tf.minimum(2 * k, tf.shape(probs)[1])
    row_probs, row_words = tf.math.top_k(probs, per_row)                                 # [B*K, 2K]
    log_probs = tf.where(row_probs >= 0, tf.math.log(tf.maximum(tf.cast(row_probs, tf.float64), 1e-30)),
                         minus_inf)
    totals = open_scores[:, :, None] + tf.reshape(log_probs, [batch, k, per_row])       # [B, K, 2K]
    scores, index = tf.math.top_k(tf.reshape(totals, [batch, k * per_row]), 2 * k)      # [B, 2K]
    words = tf.gather(tf.reshape(row_words, [batch, k * per_row]), index, batch_dims=1)
    return Candidates(scores, index // per_row, words, tf.math.is_finite(scores))


def finish(beams, k, alpha):
    """The K best captions of each image, once the loop has stopped.

    Fewer than K finished: the beams still open (cut at max_len) count too, scored as if END came next.
    """
    minus_inf = tf.constant(-np.inf, tf.float64)
    need_more = tf.reduce_sum(tf.cast(tf.math.is_finite(beams.fin_scores), tf.int32), 1) < k       # [B]
    cut_scores = beams.open_scores / tf.cast(beams.open_length + 1, tf.float64)[:, None] ** alpha
    cut_scores = tf.where(tf.logical_and(need_more[:, None], tf.math.is_finite(beams.open_scores)),
                          cut_scores, minus_inf)
    open_lengths = tf.tile(beams.open_length[:, None], [1, k])
    scores, (tokens, lengths, weights) = best_k(
        tf.concat([beams.fin_scores, cut_scores], 1), k, tf.concat([beams.fin_tokens, beams.open_tokens], 1),
        tf.concat([beams.fin_lengths, open_lengths], 1), tf.concat([beams.fin_weights, beams.open_weights], 1))
    return tokens, lengths, scores, weights


def best_k(scores, k, *per_caption):
    """The k best of n captions per image, best first; ties keep the earlier one first (a stable sort).

    scores [B, n] and tensors [B, n, ...] (tokens, lengths, weights) -> scores [B, k], (the same with n = k).
    """
    top_scores, index = tf.math.top_k(scores, k)  # top_k puts the lower index first among equals
    return top_scores, tuple(tf.gather(x, index, batch_dims=1) for x in per_caption)
