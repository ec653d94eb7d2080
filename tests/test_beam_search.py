"""Beam search on a hand-made model whose best caption greedy decoding cannot find."""

import numpy as np
import pytest

from decoding_oracle import beam_search
from capstone.errors import CapstoneError

START, END, A, B, C = 0, 1, 2, 3, 4


def table_step(table):
    """A 'language model' whose next-word distribution depends only on the previous word."""
    def step(words, state):
        return np.array([table[int(w)] for w in words]), state
    return step


# After START: A 0.5, B 0.4 (greedy takes A). After A: C 0.34, END 0.33, B 0.33 (all poor).
# After B: END 0.95. Best full caption is "B" (0.4 * 0.95 = 0.38) not "A ..." (<= 0.5 * 0.34 = 0.17).
TABLE = {
    START: [0.0, 0.0, 0.5, 0.4, 0.1],
    A: [0.0, 0.33, 0.0, 0.33, 0.34],
    B: [0.0, 0.95, 0.0, 0.0, 0.05],
    C: [0.0, 0.9, 0.0, 0.0, 0.1],
}
STATE = (np.zeros((1, 2)), np.zeros((1, 2)))


def test_beam_finds_the_caption_greedy_misses():
    found = beam_search(table_step(TABLE), STATE, START, END, beam_size=2, max_len=5)
    assert found[0][0] == [B]
    assert found[0][1] == pytest.approx((np.log(0.4) + np.log(0.95)) / 2)
    assert found[1][1] <= found[0][1]
    greedy = beam_search(table_step(TABLE), STATE, START, END, beam_size=1, max_len=5)
    assert greedy[0][0][0] == A  # beam 1 is greedy: it commits to A


def test_length_normalisation_changes_the_winner():
    table = {START: [0, 0.45, 0.55, 0, 0], A: [0, 0.5, 0.5, 0, 0], B: [0, 1, 0, 0, 0], C: [0, 1, 0, 0, 0]}
    # no normalisation (alpha=0) prefers the short "" (END first, p=0.45); mean log prob prefers "A ..."
    short = beam_search(table_step(table), STATE, START, END, beam_size=2, max_len=3, length_alpha=0.0)
    normalised = beam_search(table_step(table), STATE, START, END, beam_size=2, max_len=3, length_alpha=1.0)
    assert short[0][0] == []
    assert normalised[0][0][:1] == [A]


def test_banned_tokens_and_bad_beam_size():
    found = beam_search(table_step(TABLE), STATE, START, END, beam_size=2, max_len=5, banned=[B])
    assert all(B not in tokens for tokens, _ in found)
    for bad in (0, -1, 1.5):
        with pytest.raises(CapstoneError, match="beam size must be a positive integer"):
            beam_search(table_step(TABLE), STATE, START, END, beam_size=bad)
