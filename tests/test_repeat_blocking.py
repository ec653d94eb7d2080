"""No n-gram twice in a caption: the banned words, the decoders against the Python loops, the flags."""

import numpy as np
import pytest
import tensorflow as tf

from capstone.__main__ import main
from capstone.commands.evaluate import decoder_name
from capstone.config import ModelConfig
from capstone.errors import CapstoneError
from capstone.fast.repeat_blocking import repeated_ngram_bans
from capstone.final_model import FinalModel
from decoding_oracle import beam_search_tokens_stepwise, greedy_tokens_stepwise, repeats_an_ngram
from synthetic import untrained_run

v1 = tf.compat.v1


def bans_of(tokens, t, n, vocab_size):
    graph = tf.Graph()
    with graph.as_default():
        bans = repeated_ngram_bans(tf.constant(tokens, tf.int32), tf.constant(t), tf.constant(n), vocab_size)
        with v1.Session() as session:
            return session.run(bans)


def test_the_words_that_would_repeat_a_word_pair_are_banned():
    words = ["a", "man", "rides", "a", "bike", "on", "a"]
    ids = {w: i for i, w in enumerate(sorted(set(words)))}
    tokens = [[ids[w] for w in words] + [-1, -1]]  # 7 words so far, room for 9
    banned = lambda n: {w for w, i in ids.items() if bans_of(tokens, 7, n, len(ids))[0, i]}  # noqa: E731
    assert banned(2) == {"man", "bike"}          # "a man" and "a bike" are taken
    assert banned(3) == set()                    # "on a" never came before
    assert banned(1) == set(ids)                 # every word is in the caption already
    assert banned(0) == set()                    # no rule
    assert bans_of(tokens, 3, 2, len(ids))[0].sum() == 0  # after "a man rides" nothing repeats yet
    # rows without words (beam search's empty slots, searches that ended) ban nothing, and do not fail
    assert bans_of([[-1] * 9, [0, 1, -1, -1, -1, -1, -1, -1, -1]], 7, 2, len(ids)).sum() == 0


def test_bans_equal_the_definition_on_random_captions():
    rng = np.random.default_rng(0)
    for _ in range(60):
        tokens = rng.integers(0, 4, (5, 9)).astype(np.int32)
        t, n = int(rng.integers(0, 10)), int(rng.integers(0, 5))
        tokens[:, t:] = -1
        got = bans_of(tokens, t, n, 4)
        expected = [[repeats_an_ngram(list(row[:t]), w, n) for w in range(4)] for row in tokens]
        assert got.tolist() == expected, (tokens, t, n)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """Near-uniform words from an untrained decoder say the same few words over and over."""
    path = untrained_run(tmp_path_factory.mktemp("run"), 300, ModelConfig(img_embed_size=16))
    return FinalModel.load(path), np.random.default_rng(3).random((6, 16), dtype=np.float32)


def has_repeat(tokens, n):
    return any(repeats_an_ngram(tokens[:i], tokens[i], n) for i in range(len(tokens)))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_greedy_in_graph_blocks_repeats_as_the_python_loop_does(untrained, n):
    model, embeds = untrained
    free = model.sample_tokens(embeddings=embeds, max_len=12)
    assert any(has_repeat(tokens, n) for tokens in free)  # else this test would show nothing
    blocked = model.sample_tokens(embeddings=embeds, max_len=12, no_repeat_ngram=n)
    assert blocked == greedy_tokens_stepwise(model, embeds, max_len=12, no_repeat_ngram=n)
    assert not any(has_repeat(tokens, n) for tokens in blocked)


@pytest.mark.parametrize("n", [1, 2])
def test_beam_in_graph_blocks_repeats_as_the_numpy_beam_search_does(untrained, n):
    model, embeds = untrained
    free = model.beam_search_tokens(embeddings=embeds, beam_size=3, max_len=8)
    assert any(has_repeat(tokens, n) for found in free for tokens, _ in found)
    blocked = model.beam_search_tokens(embeddings=embeds, beam_size=3, max_len=8, no_repeat_ngram=n)
    reference = beam_search_tokens_stepwise(model, embeds, beam_size=3, max_len=8, no_repeat_ngram=n)
    assert [[t for t, _ in found] for found in blocked] == [[t for t, _ in found] for found in reference]
    np.testing.assert_allclose([[s for _, s in f] for f in blocked], [[s for _, s in f] for f in reference], atol=1e-5)
    assert not any(has_repeat(tokens, n) for found in blocked for tokens, _ in found)


def test_no_repeat_ngram_names_the_results_and_bad_values_are_clear_errors(untrained, capsys):
    model, embeds = untrained
    assert decoder_name(3, 1.0, 0) == "beam3" and decoder_name(3, 1.0, 2) == "beam3_norepeat2"
    assert decoder_name(0, 1.0, 3) == "greedy_norepeat3"
    for bad in (-1, 1.5, True):
        with pytest.raises(CapstoneError, match="no-repeat n-gram size must be a whole number >= 0"):
            model.beam_captions(embeddings=embeds, no_repeat_ngram=bad)
    message = "--no-repeat-ngram: no-repeat n-gram size must be a whole number >= 0 (0: off), got "
    assert main(["caption", model.run.path, "--embeds", "x.pickle", "--fns", "y.pickle", "--no-repeat-ngram", "-2"]) == 2
    assert message + "-2" in capsys.readouterr().err
    assert main(["serve", model.run.path, "--no-repeat-ngram", "-1"]) == 2  # refused before any model is loaded
    assert message + "-1" in capsys.readouterr().err
