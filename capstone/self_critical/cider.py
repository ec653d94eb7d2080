"""CIDEr-D, the reward of self-critical training, with document frequencies fixed once.

The numbers of pycocoevalcap's ``Cider`` (the COCO caption code's CIDEr-D: tf-idf vectors of
1..4-grams, counts clipped to the reference's, a Gaussian length penalty, x 10), but:
  * the document frequencies come from one fixed corpus of references (the training captions,
    as Rennie et al. 2017 do), not from the captions being scored, so a caption's reward does not
    depend on which other captions share its batch;
  * each reference's tf-idf vector is computed once, when the scorer is made, and a candidate is
    compared with only the n-grams it has: a few hundred captions cost a few milliseconds.
tests/test_self_critical.py checks it against pycocoevalcap's ``Cider``.
"""

import collections
import math

import numpy as np

from capstone.captions import split_sentence

N = 4          # n-grams of 1..N words
SIGMA = 6.0    # standard deviation of the length penalty, in words


def ngram_counts(words):
    """{ngram tuple: count} for n = 1..N. ["a", "dog", "a"] -> {("a",): 2, ("dog",): 1, ("a", "dog"): 1, ...}"""
    counts = collections.Counter()
    for n in range(1, N + 1):
        counts.update(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return counts


def tokens_of(caption):
    """A caption as words: a string goes through ``split_sentence``, a list of words is kept."""
    return split_sentence(caption) if isinstance(caption, str) else list(caption)


class CiderD:
    """Scores candidate captions of image i against references[i].

    references: per image, a list of reference captions (strings or word lists). They are also the
    corpus of the document frequencies: an n-gram's df is the number of images whose references hold it.
    """

    def __init__(self, references):
        counts = [[ngram_counts(tokens_of(ref)) for ref in refs] for refs in references]
        if not counts:
            raise ValueError("CiderD needs references of at least one image")
        df = collections.Counter()
        for refs in counts:
            df.update({gram for ref in refs for gram in ref})
        self.df = df
        self.log_images = math.log(float(len(counts)))
        self.references = [[self.vector(ref) for ref in refs] for refs in counts]

    def vector(self, counts):
        """(tf-idf {ngram: weight}, norms [N] of each n's part, length) of one caption's n-gram counts.

        length counts bigrams, as pycocoevalcap does (so only differences of lengths matter)."""
        vec, squares, length = {}, [0.0] * N, 0
        for gram, count in counts.items():
            weight = count * (self.log_images - math.log(max(1.0, self.df.get(gram, 0.0))))
            vec[gram] = weight
            squares[len(gram) - 1] += weight * weight
            if len(gram) == 2:
                length += count
        return vec, [math.sqrt(s) for s in squares], length

    def score(self, image, candidate):
        """CIDEr-D of one candidate (string or words) against the references of image ``image``."""
        vec, norms, length = self.vector(ngram_counts(tokens_of(candidate)))
        refs = self.references[image]
        total = 0.0
        for ref_vec, ref_norms, ref_length in refs:
            overlap = [0.0] * N
            for gram, weight in vec.items():
                ref_weight = ref_vec.get(gram)
                if ref_weight is not None:
                    overlap[len(gram) - 1] += min(weight, ref_weight) * ref_weight
            penalty = math.exp(-((length - ref_length) ** 2) / (2 * SIGMA ** 2))
            total += penalty * sum(o / (n * r) for o, n, r in zip(overlap, norms, ref_norms) if n and r) / N
        return 10.0 * total / len(refs)

    def scores(self, images, candidates):
        """[len(images)] float64: score(images[i], candidates[i]) for each i."""
        return np.array([self.score(image, candidate) for image, candidate in zip(images, candidates)])
