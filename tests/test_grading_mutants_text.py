"""Mutation tests of the text parts (generate_vocabulary, caption_tokens_to_indices,
batch_captions_to_matrix): wrong implementations a learner writes, each caught by the grader with a
useful message, on the shapes captions and on the Flickr8k-dev captions. The reference passes everything."""

import collections

import numpy as np
import pytest

from capstone import captions as ref
from capstone.captions import END, PAD, SPECIAL_TOKENS, START, UNK, split_sentence
from capstone.grading import Grader
from grading_mutant_data import data, flickr_dir  # noqa: F401  (pytest fixtures)


# --- vocabulary --------------------------------------------------------------------------------

def _counts(captions):
    return collections.Counter(t for caps in captions for c in caps for t in split_sentence(c))


def vocab_any_order(captions, min_count=5):
    words = [t for t, n in _counts(captions).items() if n >= min_count] + list(SPECIAL_TOKENS)
    return {t: i for i, t in enumerate(words)}


def vocab_off_by_one(captions, min_count=5):
    words = [t for t, n in _counts(captions).items() if n > min_count] + list(SPECIAL_TOKENS)
    return {t: i for i, t in enumerate(sorted(words))}


def vocab_once_per_caption(captions, min_count=5):
    counts = collections.Counter(t for caps in captions for c in caps for t in set(split_sentence(c)))
    return {t: i for i, t in enumerate(sorted([t for t, n in counts.items() if n >= min_count] + list(SPECIAL_TOKENS)))}


def vocab_ignores_min_count(captions, min_count=5):
    return ref.generate_vocabulary(captions, 5)


def vocab_no_specials(captions, min_count=5):
    return {t: i for i, t in enumerate(sorted(t for t, n in _counts(captions).items() if n >= min_count))}


def vocab_from_one(captions, min_count=5):
    return {t: i + 1 for t, i in ref.generate_vocabulary(captions, min_count).items()}


def vocab_str_split(captions, min_count=5):
    counts = collections.Counter(t for caps in captions for c in caps for t in c.lower().split())
    return {t: i for i, t in enumerate(sorted([t for t, n in counts.items() if n >= min_count] + list(SPECIAL_TOKENS)))}


VOCABULARY_MUTANTS = {
    vocab_any_order: "sorted token order", vocab_off_by_one: "exactly min_count", vocab_once_per_caption: "missing",
    vocab_ignores_min_count: "min_count=", vocab_no_specials: "special tokens", vocab_from_one: "0..",
    vocab_str_split: "tokens missing",
}


def test_reference_passes_every_text_part(data):
    captions, vocab = data
    grader = Grader()
    assert grader.grade_vocabulary(ref.generate_vocabulary, captions, min_count=5).passed
    assert grader.grade_indexing(ref.caption_tokens_to_indices, captions, vocab).passed
    assert grader.grade_batching(ref.batch_captions_to_matrix, vocab[PAD]).passed


@pytest.mark.parametrize("mutant", VOCABULARY_MUTANTS, ids=lambda f: f.__name__)
def test_vocabulary_mutant_is_caught(data, mutant):
    captions, _ = data
    result = Grader().grade_vocabulary(mutant, captions, min_count=5)
    assert not result.passed and result.done, result
    assert VOCABULARY_MUTANTS[mutant] in result.message, result.message
    assert "expected" in result.message and "received" in result.message


# --- indexing ----------------------------------------------------------------------------------

def index_unknown_to_pad(captions, vocab):
    return [[[vocab[START]] + [vocab.get(t, vocab[PAD]) for t in split_sentence(c)] + [vocab[END]] for c in caps]
            for caps in captions]


def index_no_end(captions, vocab):
    return [[c[:-1] for c in caps] for caps in ref.caption_tokens_to_indices(captions, vocab)]


def index_no_start(captions, vocab):
    return [[c[1:] for c in caps] for caps in ref.caption_tokens_to_indices(captions, vocab)]


def index_drops_unknown(captions, vocab):
    return [[[vocab[START]] + [vocab[t] for t in split_sentence(c) if t in vocab] + [vocab[END]] for c in caps]
            for caps in captions]


def index_flat(captions, vocab):
    return [c for caps in ref.caption_tokens_to_indices(captions, vocab) for c in caps]


def index_str_split(captions, vocab):
    return [[[vocab[START]] + [vocab.get(t, vocab[UNK]) for t in c.split()] + [vocab[END]] for c in caps]
            for caps in captions]


INDEXING_MUTANTS = {index_unknown_to_pad: "UNK", index_no_end: "ends with END", index_no_start: "starts with START",
                    index_drops_unknown: "UNK", index_flat: "one per image", index_str_split: "expected"}


@pytest.mark.parametrize("mutant", INDEXING_MUTANTS, ids=lambda f: f.__name__)
def test_indexing_mutant_is_caught(data, mutant):
    captions, vocab = data
    result = Grader().grade_indexing(mutant, captions, vocab)
    assert not result.passed and INDEXING_MUTANTS[mutant] in result.message, result.message


# --- batching ----------------------------------------------------------------------------------

def batch_in_place(batch, pad_idx, max_len=None):
    columns = max(map(len, batch)) if max_len is None else min(max_len, max(map(len, batch)))
    for caption in batch:
        caption.extend([pad_idx] * (columns - len(caption)))
        del caption[columns:]
    return np.array(batch)


def batch_left_padded(batch, pad_idx, max_len=None):
    m = ref.batch_captions_to_matrix(batch, pad_idx, max_len)
    return np.array([[pad_idx] * int(np.sum(r == pad_idx)) + [t for t in r if t != pad_idx] for r in m])


def batch_ignores_max_len(batch, pad_idx, max_len=None):
    return ref.batch_captions_to_matrix(batch, pad_idx)


def batch_max_len_off_by_one(batch, pad_idx, max_len=None):
    return ref.batch_captions_to_matrix(batch, pad_idx, None if max_len is None else max_len - 1 or 1)


def batch_pads_with_zero(batch, pad_idx, max_len=None):
    return ref.batch_captions_to_matrix(batch, 0, max_len)


def batch_always_max_len(batch, pad_idx, max_len=None):
    columns = max_len or max(map(len, batch))
    m = np.full((len(batch), columns), pad_idx)
    for i, c in enumerate(batch):
        m[i, :len(c[:columns])] = c[:columns]
    return m


BATCHING_MUTANTS = {batch_in_place: "changed its input", batch_left_padded: "column 0",
                    batch_ignores_max_len: "shape must be", batch_max_len_off_by_one: "shape must be",
                    batch_pads_with_zero: "pad_idx", batch_always_max_len: "shape must be"}


@pytest.mark.parametrize("mutant", BATCHING_MUTANTS, ids=lambda f: f.__name__)
def test_batching_mutant_is_caught(data, mutant):
    _, vocab = data
    result = Grader().grade_batching(mutant, vocab[PAD])
    assert not result.passed and BATCHING_MUTANTS[mutant] in result.message, result.message
