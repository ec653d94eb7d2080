"""A local grader for the course's six graded parts: no Coursera token, no network.

The course sent six answers to Coursera; here each part checks the *learner's own* function
or graph against the reference behaviour (``capstone.captions``, ``capstone.decoder``) and
says what was expected and what was received:

    grader = Grader()
    grader.grade_vocabulary(generate_vocabulary, train_captions)          # 1 vocabulary
    grader.grade_indexing(caption_tokens_to_indices, train_captions, vocab)  # 2 caption indexing
    grader.grade_batching(batch_captions_to_matrix, vocab[PAD])            # 3 batching
    grader.grade_decoder_shapes(decoder, session)                          # 4 decoder shapes
    grader.grade_random_init_loss(decoder, session)                        # 5 loss at random init
    grader.grade_validation_loss(val_loss)                                 # 6 validation loss
    grader.summary()                                                       # the table

From the command line::

    python -m capstone.grading               # grades the reference itself on a built-in problem
    python -m capstone.grading --run RUN_DIR  # grades a trained run's validation loss (history.json)
"""

import dataclasses
import math
import numbers
import sys

import numpy as np

from capstone import captions as reference
from capstone.captions import END, SPECIAL_TOKENS, START, UNK
from capstone.errors import CapstoneError
from capstone.support import run_dir as runs

VOCABULARY = "vocabulary"
INDEXING = "caption indexing"
BATCHING = "batching"
DECODER_SHAPES = "decoder shapes"
RANDOM_INIT_LOSS = "random init loss"
VALIDATION_LOSS = "validation loss"
PARTS = (VOCABULARY, INDEXING, BATCHING, DECODER_SHAPES, RANDOM_INIT_LOSS, VALIDATION_LOSS)

COURSE_MIN_COUNT = 5  # the course's generate_vocabulary(train_captions) keeps words seen 5 times or more
# The course's examples for batch_captions_to_matrix: (captions, max_len).
COURSE_BATCHING_EXAMPLES = (([[1, 2, 3], [4, 5]], None), ([[1, 2, 3], [4, 5]], 2), ([[1, 2, 3], [4, 5]], 100))
N_RANDOM_BATCHES = 20  # random batches compared with the reference after the course's examples

# The course's test feed for the decoder: 32 random embeddings and 32 x 20 random token ids.
COURSE_BATCH, COURSE_TIME = 32, 20
# The decoder tensors whose shapes the course checked, in its order.
DECODER_TENSORS = ("h0", "word_embeds", "flat_hidden_states", "flat_token_logits", "flat_ground_truth",
                   "flat_loss_mask", "loss")
# At random init the decoder's guess is nearly uniform, so the loss is close to ln(vocabulary size).
RANDOM_LOSS_RELATIVE_TOLERANCE = 0.1  # |loss - ln V| may be up to 10% of ln V (measured: < 0.3%)

# Validation loss (mean cross-entropy per token) a trained decoder should get below.
VALIDATION_LOSS_THRESHOLDS = {
    # shapes dataset + EfficientNet-Lite0: the quick demo reaches ~1.07, the default one ~0.80;
    # a decoder fed all-zero embeddings (a language model that ignores the image) stays at ~1.26.
    "shapes": 1.2,
    # the course's COCO sample + InceptionV3 embeddings (ln of its ~8800 words is 9.1). Not measured
    # here (no COCO data offline): a first guess, to check against a real run.
    "coco": 3.0,
}
DEFAULT_VALIDATION_LOSS_THRESHOLD = VALIDATION_LOSS_THRESHOLDS["shapes"]


@dataclasses.dataclass
class PartResult:
    """The verdict on one graded part."""
    part: str         # one of PARTS
    passed: bool
    expected: object  # what the reference gives (the course's summary of it where it had one)
    received: object  # what the learner's code gave
    message: str      # one line: what was checked, or what went wrong

    def __str__(self):
        verdict = "PASS" if self.passed else "FAIL"
        return f"{self.part}: {verdict}: {self.message}"


class _Mismatch(Exception):
    """Raised inside a check when the learner's answer differs from the reference."""

    def __init__(self, expected, received, message):
        super().__init__(message)
        self.expected, self.received, self.message = expected, received, message


def _first_line(error):
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def _call_learner(expected, name, fn, *args, **kwargs):
    """fn(*args, **kwargs); any exception in the learner's code fails the part, naming it."""
    try:
        return fn(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - a bug in learner code is a verdict, not a crash
        raise _Mismatch(expected, type(error).__name__,
                        f"{name} raised {type(error).__name__}: {_first_line(error)}") from None


def _short(value, width=32):
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


# ---------------------------------------------------------------------------------------------
# The checks. Each returns (expected, received, message) or raises _Mismatch.


def vocabulary_summary(vocab):
    """The course's check: [vocabulary size, distinct indices, 1 if PAD/UNK/START/END are in]."""
    return [len(vocab), len(set(vocab.values())), int(all(token in vocab for token in SPECIAL_TOKENS))]


def _check_vocabulary(generate_vocabulary_fn, train_captions, min_count):
    options = {} if min_count is None else {"min_count": min_count}
    min_count = COURSE_MIN_COUNT if min_count is None else min_count
    wanted = reference.generate_vocabulary(train_captions, min_count=min_count)
    expected = vocabulary_summary(wanted)
    vocab = _call_learner(expected, "generate_vocabulary", generate_vocabulary_fn, train_captions, **options)
    if not isinstance(vocab, dict):
        raise _Mismatch(expected, type(vocab).__name__,
                        f"generate_vocabulary must return a dict {{token: index}}, got a {type(vocab).__name__}")
    received = vocabulary_summary(vocab)
    missing_specials = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing_specials:
        raise _Mismatch(expected, received, f"the special tokens {missing_specials} are missing: add PAD, UNK, "
                                            f"START and END to the vocabulary")
    missing, extra = sorted(set(wanted) - set(vocab)), sorted(set(vocab) - set(wanted))
    if missing or extra:
        raise _Mismatch(expected, received, f"{len(missing)} tokens missing {missing[:5]} and {len(extra)} extra "
                                            f"{extra[:5]}: keep every token that occurs at least {min_count} times")
    indices = list(vocab.values())
    if not all(isinstance(i, numbers.Integral) for i in indices) or sorted(indices) != list(range(len(vocab))):
        raise _Mismatch(expected, received, f"indices must be the integers 0..{len(vocab) - 1}, each used once")
    return expected, received, f"{len(vocab)} tokens with indices 0..{len(vocab) - 1}, specials included"


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
            int(all(isinstance(i, numbers.Integral) for i in everything)), unknown]


def _indexing_hint(got, wanted, vocab):
    if not got or got[0] != wanted[0]:
        return f"every caption starts with START (index {vocab[START]})"
    if got[-1] != wanted[-1]:
        return f"every caption ends with END (index {vocab[END]})"
    return f"each word becomes vocab[word], or UNK (index {vocab[UNK]}) when it is not in the vocabulary"


def _check_indexing(caption_tokens_to_indices_fn, train_captions, vocab):
    missing = [token for token in (START, END, UNK) if token not in vocab]
    if missing:
        raise CapstoneError(f"grade_indexing: the vocabulary has no {missing}; grade (and fix) the vocabulary first")
    wanted = reference.caption_tokens_to_indices(train_captions, vocab)
    expected = indexing_summary(wanted, vocab)
    indexed = _call_learner(expected, "caption_tokens_to_indices", caption_tokens_to_indices_fn, train_captions, vocab)
    try:
        received = indexing_summary(indexed, vocab)
        got_lengths = [len(image_captions) for image_captions in indexed]
    except (TypeError, IndexError, KeyError):
        raise _Mismatch(expected, type(indexed).__name__, "expected a list (one per image) of lists (one per caption) "
                                                          "of token indices") from None
    if got_lengths != [len(image_captions) for image_captions in wanted]:
        raise _Mismatch(expected, received, f"expected {len(wanted)} images with their "
                                            f"{sum(map(len, wanted))} captions, received {len(got_lengths)} images "
                                            f"with {sum(got_lengths)} captions, in the same nesting as the input")
    for i, (got_image, wanted_image) in enumerate(zip(indexed, wanted)):
        for j, (got, want) in enumerate(zip(got_image, wanted_image)):
            got = list(got)
            if got != want:
                raise _Mismatch(expected, received, f"image {i} caption {j} {train_captions[i][j]!r}: expected "
                                                    f"{want}, received {got}; {_indexing_hint(got, want, vocab)}")
    if not received[4]:
        raise _Mismatch(expected, received, "indices must be integers (python ints), not floats or strings")
    return expected, received, f"{sum(got_lengths)} captions of {len(got_lengths)} images match the reference"


def _batching_cases(seed=0):
    """The course's three examples, then random batches (lengths 1..12, max_len None or 1..14)."""
    rng = np.random.default_rng(seed)
    cases = list(COURSE_BATCHING_EXAMPLES)
    for _ in range(N_RANDOM_BATCHES):
        batch = [rng.integers(0, 50, rng.integers(1, 13)).tolist() for _ in range(rng.integers(1, 7))]
        cases.append((batch, None if rng.random() < 0.3 else int(rng.integers(1, 15))))
    return cases


def _batching_hint(expected, got):
    if got.shape != expected.shape:
        return (f"shape must be {expected.shape}: one row per caption, columns = the longest caption "
                f"(at most max_len)")
    if all(sorted(g.tolist()) == sorted(e.tolist()) for g, e in zip(got, expected)):
        return "each caption starts in column 0 and the padding goes at the end of its row"
    return "copy each caption into its row, cut it at max_len and fill the rest with pad_idx"


def _check_batching(batch_captions_to_matrix_fn, pad_idx):
    course_expected = [reference.batch_captions_to_matrix(batch, pad_idx, max_len).tolist()
                       for batch, max_len in COURSE_BATCHING_EXAMPLES]
    cases = _batching_cases()
    for batch, max_len in cases:
        expected = reference.batch_captions_to_matrix(batch, pad_idx, max_len=max_len)
        call = f"batch_captions_to_matrix({batch}, {pad_idx}, max_len={max_len})"
        got = _call_learner(expected.tolist(), call, batch_captions_to_matrix_fn, batch, pad_idx, max_len=max_len)
        try:
            got = np.asarray(got)
        except ValueError:  # ragged lists
            raise _Mismatch(expected.tolist(), repr(got), f"{call}: expected a matrix, received ragged rows") from None
        if got.shape != expected.shape or not np.array_equal(got, expected):
            raise _Mismatch(expected.tolist(), got.tolist(), f"{call}: expected {expected.tolist()}, received "
                                                              f"{got.tolist()}; {_batching_hint(expected, got)}")
    return course_expected, course_expected, (f"the course's 3 examples and {len(cases) - 3} random batches "
                                              f"match the reference")


def course_feed(decoder, img_embed_size, vocab_size, seed=0):
    """The course's test feed: img_embeds [32, IMG_EMBED] uniform in [0, 1), sentences [32, 20] random ids."""
    rng = np.random.default_rng(seed)
    return {decoder.img_embeds: rng.random((COURSE_BATCH, img_embed_size)).astype(np.float32),
            decoder.sentences: rng.integers(0, vocab_size, (COURSE_BATCH, COURSE_TIME)).astype(np.int32)}


def expected_decoder_shapes(config, vocab_size, real_tokens=None):
    """Shapes of DECODER_TENSORS for the course feed.

    real_tokens: for a ``fast`` decoder, the number of non-PAD ground-truth positions, since it
    computes logits only there; None for the course's decoder (all 32 * 19 positions).
    """
    rows = COURSE_BATCH * (COURSE_TIME - 1)  # every token but the last is an input: 608 positions
    kept = rows if real_tokens is None else real_tokens
    return {
        "h0": (COURSE_BATCH, config.lstm_units),
        "word_embeds": (COURSE_BATCH, COURSE_TIME - 1, config.word_embed_size),
        "flat_hidden_states": (rows, config.lstm_units),
        "flat_token_logits": (kept, vocab_size),
        "flat_ground_truth": (kept,),
        "flat_loss_mask": (kept,),
        "loss": (),
    }


def _decoder_sizes(decoder, config, vocab_size):
    """(config, vocab_size) given, or read from a ``capstone.decoder.Decoder``."""
    config = config if config is not None else getattr(decoder, "model_config", None)
    vocab_size = vocab_size if vocab_size is not None else getattr(decoder, "vocab_size", None)
    if config is None or vocab_size is None:
        raise CapstoneError("grading: this decoder has no .model_config/.vocab_size; pass config=ModelConfig(...) "
                            "with your sizes and vocab_size=len(vocab)")
    return config, vocab_size


def _run_tensor(session, tensor, feed):
    """The shape of one evaluated tensor, or a short error text."""
    import tensorflow as tf

    try:
        return tuple(np.shape(session.run(tensor, feed)))
    except (tf.errors.OpError, ValueError, TypeError) as error:
        return f"error: {type(error).__name__}: {_first_line(error)[:120]}"


def _check_decoder_shapes(decoder, session, config, vocab_size):
    config, vocab_size = _decoder_sizes(decoder, config, vocab_size)
    feed = course_feed(decoder, config.img_embed_size, vocab_size)
    real_tokens = None
    if getattr(decoder, "fast", False):
        real_tokens = int(np.sum(feed[decoder.sentences][:, 1:] != decoder.pad_idx))
    expected = expected_decoder_shapes(config, vocab_size, real_tokens)
    received = {name: _run_tensor(session, getattr(decoder, name), feed) if hasattr(decoder, name) else "missing"
                for name in DECODER_TENSORS}  # one run per tensor, as the course did: one error hides no other
    wrong = [f"{name}: expected {expected[name]}, received {received[name]}"
             for name in DECODER_TENSORS if received[name] != expected[name]]
    if wrong:
        raise _Mismatch(expected, received, "; ".join(wrong))
    return expected, received, f"all {len(DECODER_TENSORS)} tensors have the course's shapes"


def _check_random_init_loss(decoder, session, config, vocab_size):
    config, vocab_size = _decoder_sizes(decoder, config, vocab_size)
    expected = round(math.log(vocab_size), 4)
    tolerance = RANDOM_LOSS_RELATIVE_TOLERANCE * expected
    loss = _call_learner(expected, "session.run(decoder.loss)", session.run, decoder.loss,
                         course_feed(decoder, config.img_embed_size, vocab_size))
    received = round(float(np.asarray(loss, dtype=np.float64).sum()), 4) if np.size(loss) == 1 else np.shape(loss)
    if not isinstance(received, float) or not abs(received - expected) <= tolerance:
        raise _Mismatch(expected, received, f"before training the loss should be close to ln({vocab_size}) = "
                                            f"{expected:.3f} (within {tolerance:.2f}), received {received}; "
                                            f"is it the mean cross-entropy over the non-PAD tokens?")
    return expected, received, f"{received:.3f} is within {tolerance:.2f} of ln({vocab_size})"


def _check_validation_loss(value, threshold):
    expected = f"< {threshold}"
    try:
        received = float(value)
    except (TypeError, ValueError):
        raise _Mismatch(expected, repr(value), "the validation loss must be a number") from None
    if not received < threshold:  # NaN fails too
        raise _Mismatch(expected, round(received, 4), f"validation loss {received:.3f} is not below {threshold}: "
                                                      f"train longer, or check the decoder")
    return expected, round(received, 4), f"validation loss {received:.3f} is below {threshold}"


# ---------------------------------------------------------------------------------------------


class Grader:
    """Grades the six parts; each ``grade_*`` returns a PartResult and remembers it for ``summary``."""

    def __init__(self):
        self.results = {}  # part -> PartResult, the last grading of each part

    def _grade(self, part, check, *args):
        try:
            expected, received, message = check(*args)
            result = PartResult(part, True, expected, received, message)
        except _Mismatch as mismatch:
            result = PartResult(part, False, mismatch.expected, mismatch.received, mismatch.message)
        self.results[part] = result
        return result

    def grade_vocabulary(self, generate_vocabulary_fn, train_captions, min_count=None):
        """generate_vocabulary_fn(train_captions[, min_count]) vs the reference vocabulary.

        min_count None: the course's signature (min_count fixed at 5); else it is passed on.
        """
        return self._grade(VOCABULARY, _check_vocabulary, generate_vocabulary_fn, train_captions, min_count)

    def grade_indexing(self, caption_tokens_to_indices_fn, train_captions, vocab):
        """caption_tokens_to_indices_fn(train_captions, vocab) vs the reference, caption by caption."""
        return self._grade(INDEXING, _check_indexing, caption_tokens_to_indices_fn, train_captions, vocab)

    def grade_batching(self, batch_captions_to_matrix_fn, pad_idx):
        """The course's three examples and random batches vs the reference ``batch_captions_to_matrix``."""
        return self._grade(BATCHING, _check_batching, batch_captions_to_matrix_fn, pad_idx)

    def grade_decoder_shapes(self, decoder, session, config=None, vocab_size=None):
        """Shapes of the decoder's tensors on the course feed (32 embeddings, 32 x 20 token ids).

        decoder: anything with the course's tensors (img_embeds, sentences, h0, ..., loss), its
        variables initialised in ``session``. config (sizes) and vocab_size default to the
        decoder's own ``.config`` and ``.vocab_size`` (a ``capstone.decoder.Decoder`` has them).
        """
        return self._grade(DECODER_SHAPES, _check_decoder_shapes, decoder, session, config, vocab_size)

    def grade_random_init_loss(self, decoder, session, vocab_size=None, config=None):
        """The loss on the course feed before any training: close to ln(vocab_size)."""
        return self._grade(RANDOM_INIT_LOSS, _check_random_init_loss, decoder, session, config, vocab_size)

    def grade_validation_loss(self, value, threshold=DEFAULT_VALIDATION_LOSS_THRESHOLD):
        """A trained decoder's validation loss must be below ``threshold`` (see VALIDATION_LOSS_THRESHOLDS)."""
        return self._grade(VALIDATION_LOSS, _check_validation_loss, value, threshold)

    def grade_run(self, run_dir, threshold=DEFAULT_VALIDATION_LOSS_THRESHOLD):
        """grade_validation_loss with the best validation loss in RUN_DIR/history.json."""
        return self.grade_validation_loss(runs.best_validation_loss(run_dir), threshold)

    @property
    def all_passed(self):
        return all(part in self.results and self.results[part].passed for part in PARTS)

    def table(self):
        """The grades as text: part, PASS/FAIL, expected, received; then what failed and why."""
        lines = [f"{'part':18s} {'result':6s} {'expected':32s} received", "-" * 92]
        for part in PARTS:
            result = self.results.get(part)
            if result is None:
                lines.append(f"{part:18s} {'-':6s} not graded")
                continue
            verdict = "PASS" if result.passed else "FAIL"
            lines.append(f"{part:18s} {verdict:6s} {_short(result.expected):32s} {_short(result.received)}")
        lines += [f"{result.part}: {result.message}" for result in self.results.values() if not result.passed]
        passed = sum(result.passed for result in self.results.values())
        lines.append(f"{passed}/{len(PARTS)} parts passed")
        return "\n".join(lines)

    def summary(self, file=None):
        """Print ``table()`` (to stdout, or ``file``)."""
        print(self.table(), file=file or sys.stdout)
