"""The course grader's checks on captions, vocabulary, indexing and batching, plus the loaders."""

import numpy as np
import pytest

from capstone.captions import (END, PAD, START, UNK, batch_captions_to_matrix, caption_tokens_to_indices,
                               generate_vocabulary, indices_to_caption, split_sentence)
from capstone.errors import CapstoneError

TRAIN_CAPTIONS = [
    ["A man riding a horse.", "A man on a horse!", "The man rides a brown horse"],
    ["A dog runs on the grass", "a dog, running", "Dog on grass."],
    ["A man and a dog", "the dog and the man", "a horse"],
]


def test_split_sentence_lowercases_and_drops_punctuation():
    assert split_sentence("A man, riding a HORSE.") == ["a", "man", "riding", "a", "horse"]
    assert split_sentence("  ...  ") == []


def test_generate_vocabulary_counts_over_all_captions_and_sorts():
    vocab = generate_vocabulary(TRAIN_CAPTIONS, min_count=3)
    # counts: a=9, man=5, horse=4, dog=4, the=4, on=3 ; everything else < 3
    expected_tokens = sorted(["a", "man", "horse", "dog", "the", "on", PAD, UNK, START, END])
    assert vocab == {token: i for i, token in enumerate(expected_tokens)}
    # the grader's checks: size, unique indices 0..N-1, specials present
    assert len(vocab) == 10
    assert sorted(vocab.values()) == list(range(10))
    assert all(s in vocab for s in (PAD, UNK, START, END))


def test_generate_vocabulary_with_only_rare_words_is_a_clear_error():
    with pytest.raises(CapstoneError, match="only\\s+the special tokens|min_count=5"):
        generate_vocabulary([["one two three"]], min_count=5)


def test_caption_tokens_to_indices_adds_start_end_and_unk():
    vocab = generate_vocabulary(TRAIN_CAPTIONS, min_count=3)
    indexed = caption_tokens_to_indices(TRAIN_CAPTIONS, vocab)
    assert [len(c) for c in indexed] == [3, 3, 3]
    first = indexed[0][0]  # "A man riding a horse."
    assert first == [vocab[START], vocab["a"], vocab["man"], vocab[UNK], vocab["a"], vocab["horse"], vocab[END]]
    flat = [caption for image in indexed for caption in image]
    assert {c[0] for c in flat} == {vocab[START]} and {c[-1] for c in flat} == {vocab[END]}
    assert all(type(i) is int for c in flat for i in c)
    assert sum(i == vocab[UNK] for c in flat for i in c) == 9  # riding rides brown runs grass running grass and and


def test_batch_captions_to_matrix_course_examples():
    pad = 0
    np.testing.assert_array_equal(batch_captions_to_matrix([[1, 2, 3], [4, 5]], pad), [[1, 2, 3], [4, 5, pad]])
    np.testing.assert_array_equal(batch_captions_to_matrix([[1, 2, 3], [4, 5]], pad, max_len=2), [[1, 2], [4, 5]])
    np.testing.assert_array_equal(batch_captions_to_matrix([[1, 2, 3], [4, 5]], pad, max_len=100),
                                  [[1, 2, 3], [4, 5, pad]])
    m = batch_captions_to_matrix([[7], [1, 2, 3, 4], []], 9)
    assert m.dtype == np.int32 and m.tolist() == [[7, 9, 9, 9], [1, 2, 3, 4], [9, 9, 9, 9]]


def test_indices_to_caption_stops_at_end_and_hides_specials():
    vocab = {PAD: 0, UNK: 1, START: 2, END: 3, "a": 4, "cat": 5}
    inverse = {i: t for t, i in vocab.items()}
    assert indices_to_caption([2, 4, 1, 5, 3, 4, 4], inverse) == "a cat"
