"""Captions: tokens, vocabulary, indexing and padding: the course's text exercises.

Course order: ``split_sentence`` -> ``generate_vocabulary`` -> ``caption_tokens_to_indices``
-> ``batch_captions_to_matrix``. Reading caption files (COCO, CSV) is ``capstone.data``'s job.
"""

import collections
import re

import numpy as np

from capstone.errors import CapstoneError

# special tokens
PAD = "#PAD#"
UNK = "#UNK#"
START = "#START#"
END = "#END#"
SPECIAL_TOKENS = (PAD, UNK, START, END)


def split_sentence(sentence):
    """Lower-cased word tokens; punctuation splits words and is dropped.

    "A man, riding a horse." -> ["a", "man", "riding", "a", "horse"]
    """
    return [token for token in re.split(r"\W+", sentence.lower()) if token]


def generate_vocabulary(train_captions, min_count=5):
    """Map each frequent token and the 4 special tokens to an index.

    train_captions: one list of caption strings per image, e.g. [["a cat", "the cat"], ...].
    A token is kept when it occurs at least ``min_count`` times over all captions of all
    images. Indices are 0..N-1 in sorted token order, as the course does, so the same
    captions always give the same vocabulary.
    """
    counts = collections.Counter(
        token
        for image_captions in train_captions
        for caption in image_captions
        for token in split_sentence(caption)
    )
    frequent = [token for token, count in counts.items() if count >= min_count]
    if not frequent:
        raise CapstoneError(
            f"vocabulary: no token occurs at least min_count={min_count} times in "
            f"{sum(len(c) for c in train_captions)} captions, so the vocabulary would hold only "
            f"the special tokens; lower min_count or give more captions"
        )
    tokens = sorted(set(frequent) | set(SPECIAL_TOKENS))
    return {token: index for index, token in enumerate(tokens)}


def caption_tokens_to_indices(captions, vocab):
    """Turn every caption into START, its token indices (UNK when unknown), END.

    captions: one list of caption strings per image.
    Returns the same nesting with python ints:
    [["a cat"]] -> [[[vocab[START], vocab["a"], vocab["cat"], vocab[END]]]]
    """
    start, end, unk = vocab[START], vocab[END], vocab[UNK]
    return [
        [[start] + [vocab.get(token, unk) for token in split_sentence(caption)] + [end]
         for caption in image_captions]
        for image_captions in captions
    ]


def batch_captions_to_matrix(batch_captions, pad_idx, max_len=None):
    """Pad (or cut) index lists into one int32 matrix [len(batch), columns].

    columns = the longest caption, or ``max_len`` when that is smaller.
    [[1, 2, 3], [4, 5]]             -> [[1, 2, 3], [4, 5, pad_idx]]
    [[1, 2, 3], [4, 5]], max_len=2  -> [[1, 2], [4, 5]]
    [[1, 2, 3], [4, 5]], max_len=100 -> [[1, 2, 3], [4, 5, pad_idx]]
    """
    lengths = np.array([len(caption) for caption in batch_captions], dtype=np.int64)
    columns = int(lengths.max()) if len(lengths) else 0
    if max_len is not None:
        columns = min(columns, max_len)
    matrix = np.full((len(batch_captions), columns), pad_idx, dtype=np.int32)
    if columns == 0:
        return matrix
    # Scatter all tokens at once: position (row, col) is filled when col < that row's length.
    kept = np.minimum(lengths, columns)
    rows = np.repeat(np.arange(len(batch_captions)), kept)
    cols = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
    flat = np.fromiter(
        (token for caption, n in zip(batch_captions, kept) for token in caption[:n]),
        dtype=np.int64, count=int(kept.sum()),
    )
    matrix[rows, cols] = flat
    return matrix


def indices_to_caption(indices, inverse_vocab):
    """Token indices -> caption text, dropping the special tokens and stopping at END."""
    words = []
    for index in indices:
        token = inverse_vocab[int(index)]
        if token == END:
            break
        if token not in SPECIAL_TOKENS:
            words.append(token)
    return " ".join(words)
