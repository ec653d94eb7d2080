"""Greedy and beam-search captioning inside the graph: one Session.run for a whole batch.

``FinalModel.sample_tokens_stepwise`` and ``tests.decoding_oracle`` are the readable versions:
Python asks TensorFlow for one word at a time. Each ``Session.run`` costs far more than the
arithmetic of one LSTM step (copying the state in and out, scheduling the ops), and beam search
pays it once per word *per image*. Here the same loops are ``tf.compat.v1.while_loop``s, so a
batch of images is captioned in one call, with the state staying inside TensorFlow.

Both decoders call ``next_word_probs``, the very step ``FinalModel.one_step`` runs, so greedy
tokens equal the Python loop's, and beams equal ``tests.decoding_oracle``'s (the tests check both).
Build them after the layers' variables exist (a while loop cannot create variables): FinalModel
builds ``one_step`` first.
"""

import numpy as np
import tensorflow as tf

from capstone.layers import LSTMState

v1 = tf.compat.v1


def next_word_probs(layers, words, state):
    """One decoder step for N rows.

    Reads words [N] int32 and state LSTMState(c, h) [N, LSTM_UNITS]; uses the layers of
    ``capstone.decoder.make_layers``. Returns (probs [N, vocab] float32, new LSTMState).
    """
    word_embeds = layers.word_embed(words)                               # [N, WORD_EMBED]
    new_h, new_state = layers.lstm(word_embeds, state)                   # [N, LSTM_UNITS]
    logits = layers.token_logits(layers.token_logits_bottleneck(new_h))  # [N, vocab]
    return tf.nn.softmax(logits), new_state


def allowed_tokens(vocab_size, banned):
    """[vocab] bool constant: False for the tokens that may never be emitted (PAD, START)."""
    allowed = np.ones(vocab_size, dtype=bool)
    allowed[list(banned)] = False
    return tf.constant(allowed)


def greedy_decode(layers, init_state, start_idx, end_idx, banned, max_len):
    """The most probable word at every step, for every row at once.

    Inputs: init_state LSTMState [B, LSTM_UNITS] (from the image); max_len [] int32 tensor.
    Outputs: (tokens [B, steps] int32, lengths [B] int32). Row b's caption is
      tokens[b, :lengths[b]]: its words up to and including its first END. The loop stops when
      every row has said END or after max_len words, so steps <= max_len.

    Like the Python loop, finished rows keep being computed (the batch never changes shape):
    that is what makes the arithmetic, and so every token, identical to it.
    """
    allowed = allowed_tokens(layers.token_logits.units, banned)[None]  # [1, vocab]
    batch = tf.shape(init_state.h)[0]

    def keep_going(t, words, state, done, lengths, history):
        return tf.logical_and(t < max_len, tf.logical_not(tf.reduce_all(done)))

    def one_word(t, words, state, done, lengths, history):
        probs, state = next_word_probs(layers, words, state)                      # [B, vocab]
        probs = tf.where(allowed, probs, 0.0)
        words = tf.argmax(probs, axis=1, output_type=tf.int32)                    # [B]
        lengths += tf.cast(tf.logical_not(done), tf.int32)  # rows that ended keep their length
        done = tf.logical_or(done, tf.equal(words, end_idx))
        return t + 1, words, state, done, lengths, history.write(t, words)

    start = (
        tf.constant(0),
        tf.fill([batch], tf.constant(start_idx, tf.int32)),
        init_state,
        tf.zeros([batch], tf.bool),
        tf.zeros([batch], tf.int32),
        tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=tf.TensorShape([None])),
    )
    _, _, _, _, lengths, history = v1.while_loop(keep_going, one_word, start, name="greedy_decode")
    return tf.transpose(history.stack()), lengths  # [B, steps], [B]


def beam_decode(layers, init_state, start_idx, end_idx, banned, beam_size, max_len, length_alpha):
    """``tests.decoding_oracle`` for every image of a batch in one while loop.

    Inputs: init_state LSTMState [B, LSTM_UNITS]; beam_size [] int32, max_len [] int32 and
      length_alpha [] float64 tensors.
    Outputs: (tokens [B, K, max_len] int32, lengths [B, K] int32, scores [B, K] float64), the K =
      beam_size best captions of each image, best first: tokens[b, k, :lengths[b, k]] without
      START/END, score = sum(log p) / (length + 1) ** length_alpha. Where an image has fewer than
      K captions (a tiny vocabulary) the missing ones score -inf.

    Every image keeps K beam slots (rows b * K + slot of the LSTM state). Slots that hold no beam
    score -inf, so no candidate grows from them, as if they did not exist. An image stops (its
    slots freeze) where the Python version breaks out of its loop.
    """
    vocab_size = layers.token_logits.units
    allowed = allowed_tokens(vocab_size, banned)[None]               # [1, vocab]
    batch, k = tf.shape(init_state.h)[0], beam_size
    minus_inf = tf.constant(-np.inf, tf.float64)
    alpha = tf.cast(length_alpha, tf.float64)

    def per_slot(rows_flag):
        """[B] -> [B * K]: an image's flag for each of its slots' state rows."""
        return tf.repeat(rows_flag, k)

    def keep_going(t, words, state, done, open_scores, open_tokens, open_length, fin_scores, fin_tokens, fin_lengths):
        return tf.logical_and(t < max_len, tf.logical_not(tf.reduce_all(done)))

    def one_word(t, words, state, done, open_scores, open_tokens, open_length, fin_scores, fin_tokens, fin_lengths):
        length = t + 1  # of a caption that ends now, END included
        probs, new_state = next_word_probs(layers, words, state)                         # [B*K, vocab]
        # An image's 2K best continuations can only use each slot's own 2K most probable words,
        # so the scores (float64, as tests.decoding_oracle) are computed for those alone.
        per_row = tf.minimum(2 * k, vocab_size)
        row_probs, row_words = tf.math.top_k(tf.where(allowed, probs, -1.0), per_row)   # [B*K, 2K], banned: -1
        log_probs = tf.where(row_probs >= 0, tf.math.log(tf.maximum(tf.cast(row_probs, tf.float64), 1e-30)),
                             minus_inf)
        totals = open_scores[:, :, None] + tf.reshape(log_probs, [batch, k, per_row])    # [B, K, 2K]
        # The 2K best over all slots, best first; among equal totals the lower slot, then the
        # lower word comes first, the order of tests.decoding_oracle's flat index slot * vocab + word.
        cand_scores, cand_index = tf.math.top_k(tf.reshape(totals, [batch, k * per_row]), 2 * k)  # [B, 2K]
        cand_slot = cand_index // per_row
        cand_word = tf.gather(tf.reshape(row_words, [batch, k * per_row]), cand_index, batch_dims=1)
        finite = tf.math.is_finite(cand_scores)
        ends = tf.logical_and(finite, tf.equal(cand_word, end_idx))
        opens = tf.logical_and(finite, tf.not_equal(cand_word, end_idx))
        cand_tokens = tf.gather(open_tokens, cand_slot, batch_dims=1)                   # [B, 2K, max_len]

        # Captions that end now join the finished ones; only the K best can ever be returned.
        end_scores = tf.where(ends, cand_scores / tf.cast(length, tf.float64) ** alpha, minus_inf)
        new_fin_scores, new_fin_tokens, new_fin_lengths = best_k(
            tf.concat([fin_scores, end_scores], 1), k,
            tf.concat([fin_tokens, cand_tokens], 1),
            tf.concat([fin_lengths, tf.fill(tf.shape(cand_word), t)], 1))

        # The first K candidates that go on become the next beams.
        position = tf.range(2 * k)[None]                                                 # [1, 2K]
        _, pick = tf.math.top_k(-tf.where(opens, position, position + 2 * k), k)         # [B, K]
        next_valid = tf.gather(opens, pick, batch_dims=1)
        next_scores = tf.where(next_valid, tf.gather(cand_scores, pick, batch_dims=1), minus_inf)
        next_slot = tf.gather(cand_slot, pick, batch_dims=1)
        next_word = tf.gather(cand_word, pick, batch_dims=1)
        at_t = tf.equal(tf.range(tf.shape(open_tokens)[2]), t)[None, None]               # [1, 1, max_len]
        next_tokens = tf.where(at_t, next_word[:, :, None], tf.gather(open_tokens, next_slot, batch_dims=1))

        # Stop an image when its best open beam cannot beat its K-th finished caption any more,
        # or when nothing goes on (as tests.decoding_oracle breaks out of its loop).
        count = tf.reduce_sum(tf.cast(tf.math.is_finite(new_fin_scores), tf.int32), 1)  # [B]
        kth = new_fin_scores[:, -1]
        best_open = tf.reduce_max(next_scores, 1) / tf.cast(max_len + 1, tf.float64) ** alpha
        stop = tf.logical_or(tf.logical_and(count >= k, best_open <= kth), tf.logical_not(tf.reduce_any(next_valid, 1)))

        active = tf.logical_not(done)               # images still searching before this word
        go_on = tf.logical_and(active, tf.logical_not(stop))
        go_on_rows = per_slot(go_on)                # [B*K]
        parent_rows = tf.reshape(tf.range(batch)[:, None] * k + next_slot, [-1])        # [B*K]
        state = LSTMState(*(tf.where(go_on_rows[:, None], tf.gather(new, parent_rows), old)
                            for new, old in zip(new_state, state)))
        return (
            t + 1,
            tf.where(go_on_rows, tf.reshape(next_word, [-1]), words),
            state,
            tf.logical_or(done, stop),
            tf.where(go_on[:, None], next_scores, open_scores),
            tf.where(go_on[:, None, None], next_tokens, open_tokens),
            tf.where(go_on, open_length + 1, open_length),
            tf.where(active[:, None], new_fin_scores, fin_scores),
            tf.where(active[:, None, None], new_fin_tokens, fin_tokens),
            tf.where(active[:, None], new_fin_lengths, fin_lengths),
        )

    # Before the first word each image has one beam (slot 0, empty, log prob 0).
    first_slot = tf.equal(tf.range(k), 0)[None]                                          # [1, K]
    start = (
        tf.constant(0),
        tf.fill([batch * k], tf.constant(start_idx, tf.int32)),
        LSTMState(*(tf.repeat(s, k, axis=0) for s in init_state)),                        # [B*K, LSTM_UNITS]
        tf.zeros([batch], tf.bool),
        tf.where(first_slot, tf.zeros([batch, k], tf.float64), minus_inf),
        tf.fill([batch, k, max_len], -1),
        tf.zeros([batch], tf.int32),
        minus_inf * tf.ones([batch, k], tf.float64),
        tf.fill([batch, k, max_len], -1),
        tf.zeros([batch, k], tf.int32),
    )
    invariants = tuple(tf.TensorShape([None] * len(x.shape)) if not isinstance(x, LSTMState)
                       else LSTMState(*(tf.TensorShape([None, s.shape[1]]) for s in x)) for x in start)
    final = v1.while_loop(keep_going, one_word, start, shape_invariants=invariants, name="beam_decode")
    _, _, _, _, open_scores, open_tokens, open_length, fin_scores, fin_tokens, fin_lengths = final

    # Fewer than K finished: the beams still open (cut at max_len) count too, scored as if END came next.
    need_more = tf.reduce_sum(tf.cast(tf.math.is_finite(fin_scores), tf.int32), 1) < k       # [B]
    cut_scores = open_scores / tf.cast(open_length + 1, tf.float64)[:, None] ** alpha
    cut_scores = tf.where(tf.logical_and(need_more[:, None], tf.math.is_finite(open_scores)), cut_scores, minus_inf)
    open_lengths = tf.tile(open_length[:, None], [1, k])
    scores, tokens, lengths = best_k(tf.concat([fin_scores, cut_scores], 1), k,
                                     tf.concat([fin_tokens, open_tokens], 1), tf.concat([fin_lengths, open_lengths], 1))
    return tokens, lengths, scores


def best_k(scores, k, tokens, lengths):
    """The k best of n captions per image, best first; ties keep the earlier one first (a stable sort).

    scores [B, n], tokens [B, n, max_len], lengths [B, n] -> the same with n = k.
    """
    top_scores, index = tf.math.top_k(scores, k)  # top_k puts the lower index first among equals
    return top_scores, tf.gather(tokens, index, batch_dims=1), tf.gather(lengths, index, batch_dims=1)
