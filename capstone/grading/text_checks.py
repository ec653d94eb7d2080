"""Checks of the three text exercises: vocabulary, caption indexing, batching.

Each learner function is run on the learner's own data *and* on small probes made to expose
the usual mistakes (a word seen exactly ``min_count`` times, a word repeated inside one
caption, unknown words, captions longer than ``max_len``). Inputs are deep copies, and a
function that changes its input fails: it would corrupt the caller's captions.
"""

import copy
import inspect
import numbers

import numpy as np

from capstone import captions as reference
from capstone.captions import END, SPECIAL_TOKENS, START, UNK, split_sentence
from capstone.errors import CapstoneError
from capstone.grading.common import Mismatch, call_learner

COURSE_MIN_COUNT = 5  # the course's generate_vocabulary(train_captions) keeps words seen 5 times or more
# The course's examples for batch_captions_to_matrix: (captions, max_len).
COURSE_BATCHING_EXAMPLES = (([[1, 2, 3], [4, 5]], None), ([[1, 2, 3], [4, 5]], 2), ([[1, 2, 3], [4, 5]], 100))
N_RANDOM_BATCHES = 20  # random batches compared with the reference after the course's examples


def vocabulary_probe(min_count):
    """Captions where 'exact' occurs min_count times, 'almost' min_count - 1 times, 'twice' min_count
    times but only in captions that repeat it (counted once per caption it would be rare), and
    'zebra'/'apple' often enough; 'apple' < 'zebra' < 'exact' by count, so any order but the sorted
    one shows."""
    captions = [["Zebra apple apple."] for _ in range(min_count + 2)]
    captions += [["exact zebra"] for _ in range(min_count)]
    captions += [["almost, Apple"] for _ in range(max(min_count - 1, 0))]
    repeats = max(min_count // 2, 1)
    captions += [[" ".join(["twice"] * (min_count // repeats + (min_count % repeats > 0)))] for _ in range(repeats)]
    return captions


def vocabulary_summary(vocab):
    """The course's check: [vocabulary size, distinct indices, 1 if PAD/UNK/START/END are in]."""
    return [len(vocab), len(set(vocab.values())), int(all(token in vocab for token in SPECIAL_TOKENS))]


def _accepts_min_count(fn):
    try:
        return "min_count" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _vocabulary_hint(vocab, wanted, min_count, counts):
    missing, extra = sorted(set(wanted) - set(vocab)), sorted(set(vocab) - set(wanted))
    if any(token not in vocab for token in SPECIAL_TOKENS):
        return f"the special tokens {[t for t in SPECIAL_TOKENS if t not in vocab]} are missing: add PAD, UNK, START and END"
    if missing or extra:
        text = f"{len(missing)} tokens missing {missing[:5]} and {len(extra)} extra {extra[:5]}"
        if any(counts.get(token) == min_count for token in missing):
            return text + f": a token seen exactly min_count={min_count} times is kept (>=, not >)"
        if any(counts.get(token) == min_count - 1 for token in extra):
            return text + f": a token seen min_count - 1 = {min_count - 1} times is left out (>=, not > min_count - 1)"
        return text + (f": count every occurrence of every token over all captions and keep those seen at least "
                       f"min_count={min_count} times (use the min_count argument)")
    indices = list(vocab.values())
    if not all(isinstance(i, numbers.Integral) for i in indices) or sorted(indices) != list(range(len(vocab))):
        return f"indices must be the integers 0..{len(vocab) - 1}, each used once"
    return "indices follow sorted token order, as the course's {token: index for index, token in enumerate(sorted(...))}"


def check_vocabulary(generate_vocabulary_fn, train_captions, min_count):
    options = {} if min_count is None else {"min_count": min_count}
    min_count = COURSE_MIN_COUNT if min_count is None else min_count
    probes = [(train_captions, options, min_count)]
    probes.append((vocabulary_probe(min_count), options, min_count))
    if _accepts_min_count(generate_vocabulary_fn):  # the spec's signature: the argument must count
        probes += [(vocabulary_probe(m), {"min_count": m}, m) for m in (2, 3) if m != min_count]
    summary = None
    for captions, kwargs, count in probes:
        wanted = reference.generate_vocabulary(captions, min_count=count)
        expected = vocabulary_summary(wanted)
        call = f"generate_vocabulary({'train_captions' if captions is train_captions else 'probe'}" + \
               "".join(f", {k}={v}" for k, v in kwargs.items()) + ")"
        vocab = call_learner(expected, call, generate_vocabulary_fn, captions, **kwargs)
        if not isinstance(vocab, dict):
            raise Mismatch(expected, type(vocab).__name__,
                           f"{call} must return a dict {{token: index}}, received a {type(vocab).__name__}")
        received = vocabulary_summary(vocab)
        if vocab != wanted:
            counts = {}
            for image_captions in captions:
                for caption in image_captions:
                    for token in split_sentence(caption):
                        counts[token] = counts.get(token, 0) + 1
            shown = {t: wanted[t] for t in sorted(wanted)[:6]}
            raise Mismatch(expected, received, f"{call}: expected {len(wanted)} tokens {shown}..., received "
                                               f"{len(vocab)} tokens {dict(list(vocab.items())[:6])}...; "
                                               f"{_vocabulary_hint(vocab, wanted, count, counts)}")
        summary = summary or (expected, received)
    expected, received = summary
    return expected, received, (f"{received[0]} tokens with indices 0..{received[0] - 1} in sorted order, specials "
                                f"included; {len(probes) - 1} probes for min_count passed")


def indexing_summary(indexed, vocab):
    """The course's check: [distinct first tokens, distinct last tokens, distinct tokens between,
    distinct tokens in all, 1 if all are integers, number of UNK tokens]."""
    starts, ends, between, unknown = set(), set(), set(), 0
    for image_captions in indexed:
        for caption in image_captions:
            caption = list(caption)
            starts.add(caption[0])
            ends.add(caption[-1])
            between.update(caption[1:-1])
            unknown += sum(1 for index in caption if index == vocab[UNK])
    everything = starts | ends | between
    return [len(starts), len(ends), len(between), len(everything),
            int(all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in everything)), unknown]


def _indexing_hint(got, wanted, vocab):
    if not got or got[0] != wanted[0]:
        return f"every caption starts with START (index {vocab[START]})"
    if got[-1] != wanted[-1]:
        return f"every caption ends with END (index {vocab[END]})"
    if len(got) == len(wanted):
        unknown = [g for g, w in zip(got, wanted) if w == vocab[UNK] and g != w]
        if unknown:
            return f"a word that is not in the vocabulary becomes UNK (index {vocab[UNK]}), received {unknown[0]}"
    return f"split with split_sentence; each word becomes vocab[word], or UNK (index {vocab[UNK]}) when unknown"


def check_indexing(caption_tokens_to_indices_fn, train_captions, vocab):
    missing = [token for token in (START, END, UNK) if token not in vocab]
    if missing:
        raise CapstoneError(f"grade_indexing: the vocabulary has no {missing}; grade (and fix) the vocabulary first")
    known = sorted(token for token in vocab if token not in SPECIAL_TOKENS) or ["a"]
    probe = [[f"{known[0]} zebra-xylophone {known[-1]}!", "Qwertyuiop"], [" ".join(known[:3]).upper()]]
    summary = None
    for name, captions in (("train_captions", train_captions), ("probe", probe)):
        wanted = reference.caption_tokens_to_indices(captions, vocab)
        expected = indexing_summary(wanted, vocab)
        indexed = call_learner(expected, f"caption_tokens_to_indices({name}, vocab)", caption_tokens_to_indices_fn,
                               captions, vocab)
        try:
            received = indexing_summary(indexed, vocab)
            got_lengths = [len(image_captions) for image_captions in indexed]
        except (TypeError, IndexError, KeyError):
            raise Mismatch(expected, type(indexed).__name__, f"expected a list (one per image) of lists (one per "
                                                             f"caption) of token indices, received "
                                                             f"{repr(indexed)[:60]}...") from None
        if got_lengths != [len(image_captions) for image_captions in wanted]:
            raise Mismatch(expected, received, f"expected {len(wanted)} images with their "
                                               f"{sum(map(len, wanted))} captions, received {len(got_lengths)} "
                                               f"images with {sum(got_lengths)} captions, in the same nesting as "
                                               f"the input")
        for i, (got_image, wanted_image) in enumerate(zip(indexed, wanted)):
            for j, (got, want) in enumerate(zip(got_image, wanted_image)):
                got = list(got)
                if got != want:
                    raise Mismatch(expected, received, f"{name}: image {i} caption {j} {captions[i][j]!r}: "
                                                       f"expected {want}, received {got}; "
                                                       f"{_indexing_hint(got, want, vocab)}")
        if not received[4]:
            raise Mismatch(expected, received, "indices must be integers (python ints), not floats or strings")
        summary = summary or (expected, received, sum(got_lengths), len(got_lengths))
    expected, received, n_captions, n_images = summary
    return expected, received, f"{n_captions} captions of {n_images} images and a probe with unknown words match"


def batching_cases(pad_idx, seed=0):
    """The course's three examples, then random batches (lengths 1..12, max_len None or 1..14)
    whose tokens avoid pad_idx, so a padding mistake cannot hide."""
    rng = np.random.default_rng(seed)
    cases = list(COURSE_BATCHING_EXAMPLES)
    tokens = [t for t in range(60) if t != pad_idx]
    for _ in range(N_RANDOM_BATCHES):
        batch = [rng.choice(tokens, rng.integers(1, 13)).tolist() for _ in range(rng.integers(1, 7))]
        cases.append((batch, None if rng.random() < 0.3 else int(rng.integers(1, 15))))
    return cases


def _batching_hint(expected, got):
    if got.shape != expected.shape:
        return (f"shape must be {expected.shape}: one row per caption, columns = the longest caption "
                f"(at most max_len)")
    if all(sorted(g.tolist()) == sorted(e.tolist()) for g, e in zip(got, expected)):
        return "each caption starts in column 0 and the padding goes at the end of its row"
    return "copy each caption into its row, cut it at max_len and fill the rest with pad_idx"


def check_batching(batch_captions_to_matrix_fn, pad_idx):
    course_expected = [reference.batch_captions_to_matrix(batch, pad_idx, max_len).tolist()
                       for batch, max_len in COURSE_BATCHING_EXAMPLES]
    cases = batching_cases(pad_idx)
    for batch, max_len in cases:
        expected = reference.batch_captions_to_matrix(batch, pad_idx, max_len=max_len)
        call = f"batch_captions_to_matrix({batch}, {pad_idx}, max_len={max_len})"
        got = call_learner(expected.tolist(), call, batch_captions_to_matrix_fn, batch, pad_idx, max_len=max_len)
        try:
            got = np.asarray(got)
        except ValueError:  # ragged lists
            raise Mismatch(expected.tolist(), repr(got), f"{call}: expected a matrix, received ragged rows") from None
        if got.shape != expected.shape or not np.array_equal(got, expected):
            raise Mismatch(expected.tolist(), got.tolist(), f"{call}: expected {expected.tolist()}, received "
                                                            f"{got.tolist()}; {_batching_hint(expected, got)}")
    changed = _changes_its_input(batch_captions_to_matrix_fn, pad_idx)
    if changed:
        raise Mismatch(course_expected, "changed its input", changed)
    return course_expected, course_expected, (f"the course's 3 examples and {len(cases) - 3} random batches "
                                              f"match the reference; the input lists are left as they were")


def _changes_its_input(batch_captions_to_matrix_fn, pad_idx):
    """A message when the function changes the lists it is given (e.g. pads them in place), else None."""
    batch = [[1, 2, 3], [4, 5], [6]]
    given = copy.deepcopy(batch)
    try:
        batch_captions_to_matrix_fn(given, pad_idx, max_len=2)
    except Exception:  # noqa: BLE001 - the cases above already ran it; only the input matters here
        pass
    if given != batch:
        return (f"batch_captions_to_matrix({batch}, {pad_idx}, max_len=2) changed its input to {given}: build a new "
                f"matrix (np.full(..., pad_idx)) and copy the captions into it; padding the caller's lists in place "
                f"corrupts the captions for every later batch")
    return None
