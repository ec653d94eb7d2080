"""Nearest-neighbour caption retrieval: the baseline a trained captioning model must beat.

Devlin et al. 2015, "Exploring nearest neighbor approaches for image captioning": to caption
a new image, find the k training images whose embeddings are closest (cosine similarity),
pool all their captions, and return the *consensus* caption, the one that agrees most with
the others (highest mean sentence-BLEU against every other caption in the pool).
No new words are ever made up, so it is a strong and honest baseline for BLEU/CIDEr.

    nearest_neighbour_captions(train_embeds [N, D], train_captions, query_embeds [M, D], k=5)
    -> ["a dog runs on the grass", ...]   # M captions
"""

import numpy as np

from capstone.captions import split_sentence
from capstone.errors import CapstoneError

NGRAM_ORDER = 4  # BLEU-4: unigrams to 4-grams
# Similarities computed at once: a chunk of queries times all N training images. 2**24
# float32 numbers are 64 MiB, so 40,000 training images take 419 queries per chunk.
SIMILARITY_CHUNK_ELEMENTS = 2 ** 24


def _unit_rows(embeds, name):
    """A 2-D embedding matrix -> float32 copy with every row scaled to length 1."""
    try:
        embeds = np.asarray(embeds, dtype=np.float32)
    except (TypeError, ValueError):
        raise CapstoneError(f"{name}: expected a numeric [images, features] matrix") from None
    if embeds.ndim != 2:
        raise CapstoneError(f"{name}: expected a 2-D [images, features] matrix, got shape {embeds.shape}")
    if not np.all(np.isfinite(embeds)):
        raise CapstoneError(f"{name}: contains NaN or infinite values")
    norms = np.linalg.norm(embeds, axis=1, keepdims=True)  # [images, 1]
    # An all-zero row stays zero (similarity 0 to everything) instead of dividing by zero.
    return embeds / np.maximum(norms, 1e-12)


def nearest_neighbours(train_embeds, query_embeds, k):
    """Indices of the k most cosine-similar training rows for every query row.

    train_embeds [N, D], query_embeds [M, D] -> int64 [M, min(k, N)], most similar first
    (ties: the lower training index first). Queries go in chunks so that memory stays
    near ``SIMILARITY_CHUNK_ELEMENTS`` floats even for N = 40,000 and M = 40,000.
    """
    train_unit = _unit_rows(train_embeds, "train_embeds")  # [N, D]
    query_unit = _unit_rows(query_embeds, "query_embeds")  # [M, D]
    if train_unit.shape[0] == 0:
        raise CapstoneError("train_embeds: has no rows (no training images to retrieve from)")
    if query_unit.shape[1] != train_unit.shape[1]:
        raise CapstoneError(
            f"query_embeds: has {query_unit.shape[1]} features per image but train_embeds has "
            f"{train_unit.shape[1]}; embed both with the same encoder"
        )
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise CapstoneError(f"k: expected a positive number of neighbours, got {k!r}")
    n_train, n_query = train_unit.shape[0], query_unit.shape[0]
    k = min(int(k), n_train)
    chunk = max(1, SIMILARITY_CHUNK_ELEMENTS // n_train)
    result = np.empty((n_query, k), dtype=np.int64)
    for start in range(0, n_query, chunk):
        sims = query_unit[start:start + chunk] @ train_unit.T  # [chunk, N]
        # argpartition finds the k best in O(N) per row; only those k are then sorted.
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # [chunk, k], unordered
        top_sims = np.take_along_axis(sims, top, axis=1)  # [chunk, k]
        order = np.lexsort((top, -top_sims), axis=-1)  # by similarity, then by index
        result[start:start + chunk] = np.take_along_axis(top, order, axis=1)
    return result


def _ngram_counts(token_lists, n):
    """Counts of every n-gram: [captions, distinct n-grams in these captions] int32."""
    columns = {}
    rows = []
    for tokens in token_lists:
        row = {}
        for i in range(len(tokens) - n + 1):
            column = columns.setdefault(tuple(tokens[i:i + n]), len(columns))
            row[column] = row.get(column, 0) + 1
        rows.append(row)
    counts = np.zeros((len(token_lists), max(len(columns), 1)), dtype=np.int32)
    for r, row in enumerate(rows):
        counts[r, list(row)] = list(row.values())
    return counts


def _clipped_overlap(counts):
    """[P, V] counts -> [P, P] with sum over n-grams of min(counts[i], counts[j]).

    min(a, b) for whole numbers equals the number of levels t >= 1 with a >= t and b >= t,
    so the clipped overlap is a sum of matrix products of 0/1 "count >= t" matrices.
    """
    overlap = np.zeros((counts.shape[0], counts.shape[0]), dtype=np.float64)
    for level in range(1, int(counts.max(initial=0)) + 1):
        at_least = (counts >= level).astype(np.float64)  # [P, V]
        overlap += at_least @ at_least.T
    return overlap


def pairwise_bleu(token_lists):
    """Smoothed sentence BLEU-4 of every caption against every other one, [P, P].

    Entry [i, j] scores caption i as the candidate and caption j as its only reference.
    n-gram precisions for n > 1 get add-one smoothing (Lin & Och 2004) so that one missing
    4-gram does not zero the score of a short caption; an empty candidate scores 0.
    """
    lengths = np.array([len(tokens) for tokens in token_lists], dtype=np.float64)  # [P]
    log_precision_sum = np.zeros((len(token_lists), len(token_lists)))
    with np.errstate(divide="ignore", invalid="ignore"):
        for n in range(1, NGRAM_ORDER + 1):
            matches = _clipped_overlap(_ngram_counts(token_lists, n))  # [P, P]
            guesses = np.maximum(lengths - n + 1, 0)[:, None]  # [P, 1] n-grams in candidate i
            smoothing = 0.0 if n == 1 else 1.0
            precision = (matches + smoothing) / (guesses + smoothing)
            log_precision_sum += np.log(np.where(guesses + smoothing > 0, precision, 0.0))
        # Brevity penalty: a candidate shorter than its reference is punished.
        brevity = np.exp(np.minimum(0.0, 1.0 - lengths[None, :] / lengths[:, None]))
        bleu = brevity * np.exp(log_precision_sum / NGRAM_ORDER)
    return np.nan_to_num(bleu, nan=0.0)


def consensus_caption(captions):
    """The caption with the highest mean BLEU against all the *other* captions.

    ["a dog runs", "a dog is running", "a cat"] -> "a dog runs"
    Ties go to the earlier caption. One caption is returned as is; none gives "".
    """
    if len(captions) <= 1:
        return captions[0] if captions else ""
    bleu = pairwise_bleu([split_sentence(caption) for caption in captions])  # [P, P]
    np.fill_diagonal(bleu, 0.0)  # a caption never votes for itself
    consensus = bleu.sum(axis=1) / (len(captions) - 1)  # [P]
    return captions[int(np.argmax(consensus))]


def _check_captions(train_captions, n_train):
    if len(train_captions) != n_train:
        raise CapstoneError(
            f"train_captions: has {len(train_captions)} entries but train_embeds has {n_train} rows; "
            f"they must be aligned (one list of captions per training image)"
        )
    for index, image_captions in enumerate(train_captions):
        if not isinstance(image_captions, (list, tuple)) or not all(isinstance(c, str) for c in image_captions):
            raise CapstoneError(f"train_captions[{index}]: expected a list of caption strings")


def nearest_neighbour_captions(train_embeds, train_captions, query_embeds, k=5):
    """One retrieved caption per query image.

    train_embeds [N, D] and train_captions (N lists of caption strings, aligned) describe
    the training images; query_embeds [M, D] the images to caption.
    Returns M strings: for each query, the consensus caption of the captions of its k
    nearest training images.
    """
    neighbours = nearest_neighbours(train_embeds, query_embeds, k)  # [M, k]
    _check_captions(train_captions, np.shape(train_embeds)[0])
    return [
        consensus_caption([caption for index in row for caption in train_captions[index]])
        for row in neighbours
    ]
