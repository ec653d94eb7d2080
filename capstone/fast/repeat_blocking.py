"""No n-gram twice in a caption: the words a decoder may not say next, for every row at once.

Trained to maximise CIDEr (self-critical training), a decoder learns that naming the main object
again is cheap: on Flickr8k 6-17 % of its beam-3 captions repeat a word pair ("a man rides a bike
on a bike", "in the air in the air"), where 3.9 % of the human captions do. Blocking the word that
would complete an n-gram already in the caption (``no_repeat_ngram_size`` in the Transformers
library, ``block_trigrams`` in the self-critical captioning code) stops it at decoding time:
``--no-repeat-ngram N`` of caption, evaluate and serve (default 0: off, as the shapes demo's captions
repeat word pairs by design); ``demo --photos`` decodes its beams with N = 2, which bench/QUALITY.md
measured best on Flickr8k's validation photos.
"""

import numpy as np
import tensorflow as tf


def repeated_ngram_bans(tokens, t, n, vocab_size):
    """[R, vocab] bool: True for each word that would repeat an n-gram of its row's caption.

    Reads tokens [R, max_len] int32 (row r's words so far in tokens[r, :t], -1 for no word, the rest
    anything), t [] int32 (the position of the next word), n [] int32 (0: block nothing; 1: no word
    twice; 2: no word pair twice; ...). The next word w is banned when the caption's last n - 1 words
    followed by w already occur in tokens[r, :t]. START is not a word of the caption.
    """
    rows, max_len = tf.shape(tokens)[0], tf.shape(tokens)[1]
    n = tf.cast(n, tf.int32)
    starts = tf.range(max_len)                                                      # [W]: an earlier n-gram's start
    # The earlier n-gram tokens[i : i + n] must be complete before the next word: i + n <= t.
    complete = tf.logical_and(starts + n <= t, n > 0)                              # [W]
    offsets = tf.range(tf.maximum(n - 1, 0))                                        # [n-1]

    def at(positions):  # tokens at positions clipped into the row: those outside only meet False
        return tf.gather(tokens, tf.clip_by_value(positions, 0, max_len - 1), axis=1)

    earlier = at(starts[:, None] + offsets[None])                                   # [R, W, n-1]
    last = at(t - n + 1 + offsets)                                                  # [R, n-1]
    follower = at(starts + n - 1)                                                   # [R, W]
    # A row may hold -1 (no word) before t: beam search's empty slots, and images whose search has
    # ended while others go on. Such "words" ban nothing.
    matches = tf.logical_and(tf.reduce_all(tf.equal(earlier, last[:, None]), axis=2),
                             tf.logical_and(complete[None], follower >= 0))                # [R, W]
    follower = tf.where(matches, follower, 0)  # unmatched positions point at word 0...
    row_ids = tf.broadcast_to(tf.range(rows)[:, None], tf.shape(follower))
    hits = tf.scatter_nd(tf.stack([row_ids, follower], axis=-1), tf.cast(matches, tf.int32),  # ...adding 0 there
                         tf.stack([rows, vocab_size]))
    return hits > 0


def allowed_next(allowed, tokens_so_far, t, n):
    """The words allowed next: allowed [1, vocab] bool (the words ever allowed), and when an n-gram could
    repeat (n > 0 and t >= n) not ``repeated_ngram_bans`` either, [R, vocab]. tokens_so_far: a function
    returning tokens [R, >= t]; called only then, so that with n = 0 (the default) a decoder's step does
    no more work than before."""
    n = tf.cast(n, tf.int32)

    def allowed_and_no_repeat():
        tokens = tokens_so_far()
        return tf.logical_and(allowed, tf.logical_not(repeated_ngram_bans(tokens, t, n, tf.shape(allowed)[1])))

    return tf.cond(tf.logical_and(n > 0, t >= n), allowed_and_no_repeat, lambda: allowed)


def without_repeats(logits, tokens_so_far, t, n):
    """logits [R, vocab] with -inf for the words ``repeated_ngram_bans`` finds, when an n-gram could repeat
    (n > 0 and t >= n); unchanged otherwise, with no pass over them (greedy decoding's words that are
    never allowed already have -inf logits: ``capstone.fast.decoding.token_logits``). tokens_so_far: as
    ``allowed_next``'s."""
    n = tf.cast(n, tf.int32)

    def blocked():
        return tf.where(repeated_ngram_bans(tokens_so_far(), t, n, tf.shape(logits)[1]), -np.inf, logits)

    return tf.cond(tf.logical_and(n > 0, t >= n), blocked, lambda: logits)
