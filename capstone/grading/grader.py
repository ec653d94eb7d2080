"""A local grader for the course's graded parts: no Coursera token, no network.

The course sent answers to Coursera; here each part checks the *learner's own* function, graph
or trained model against the reference behaviour, and says what was expected, what was
received and the likely mistake:

    grader = Grader()
    grader.grade_vocabulary(generate_vocabulary, train_captions)               # 1 vocabulary
    grader.grade_indexing(caption_tokens_to_indices, train_captions, vocab)     # 2 caption indexing
    grader.grade_batching(batch_captions_to_matrix, vocab[PAD])                # 3 batching
    grader.grade_decoder_shapes(decoder, session)                              # 4 decoder shapes (+ variables)
    grader.grade_random_init_loss(decoder, session)                            # 5 decoder loss (numpy recomputed)
    grader.grade_generate_batch(generate_batch)                                # 6 generate_batch
    grader.grade_validation_loss(decoder, session, val_embeds, val_captions, vocab)  # 7 validation loss
    grader.grade_sampler(one_step, generate_caption)                           # 8 sampler
    grader.summary()                                                           # the table

A part whose code still raises NotImplementedError is "not done yet" (TODO), not a failure.
The checks live in text_checks.py, decoder_checks.py, training_checks.py and sampler.py.
"""

import sys

from capstone.grading import decoder_checks, text_checks, training_checks
from capstone.grading.common import NOT_DONE, Mismatch, NotDone, PartResult, short
from capstone.grading.training_checks import VALIDATION_LOSS_THRESHOLDS

VOCABULARY = "vocabulary"
INDEXING = "caption indexing"
BATCHING = "batching"
DECODER_SHAPES = "decoder shapes"
DECODER_LOSS = "decoder loss"
GENERATE_BATCH = "generate_batch"
VALIDATION_LOSS = "validation loss"
SAMPLER = "sampler"
PARTS = (VOCABULARY, INDEXING, BATCHING, DECODER_SHAPES, DECODER_LOSS, GENERATE_BATCH, VALIDATION_LOSS, SAMPLER)
RANDOM_INIT_LOSS = DECODER_LOSS  # the course's name for part 5


class Grader:
    """Grades the parts; each ``grade_*`` returns a PartResult and remembers it for ``summary``."""

    def __init__(self):
        self.results = {}  # part -> PartResult, the last grading of each part

    def _grade(self, part, check, *args):
        try:
            expected, received, message = check(*args)
            result = PartResult(part, True, expected, received, message)
        except Mismatch as mismatch:
            result = PartResult(part, False, mismatch.expected, mismatch.received, mismatch.message)
        except NotDone as not_done:
            result = PartResult(part, False, "-", NOT_DONE, str(not_done), done=False)
        self.results[part] = result
        return result

    @staticmethod
    def _needs(decoder, check):
        """check, or a NotDone when the learner's decoder could not be built (None)."""
        def run(*args):
            if decoder is None:
                raise NotDone("your decoder (it is None: building it raised NotImplementedError)")
            return check(*args)
        return run

    def grade_vocabulary(self, generate_vocabulary_fn, train_captions, min_count=None):
        """generate_vocabulary_fn(train_captions[, min_count]) vs the reference, on the data and on probes.

        min_count None: the course's signature (min_count fixed at 5); else it is passed on.
        """
        return self._grade(VOCABULARY, text_checks.check_vocabulary, generate_vocabulary_fn, train_captions,
                           min_count)

    def grade_indexing(self, caption_tokens_to_indices_fn, train_captions, vocab):
        """caption_tokens_to_indices_fn(train_captions, vocab) vs the reference, caption by caption."""
        return self._grade(INDEXING, text_checks.check_indexing, caption_tokens_to_indices_fn, train_captions, vocab)

    def grade_batching(self, batch_captions_to_matrix_fn, pad_idx):
        """The course's three examples and random batches vs the reference ``batch_captions_to_matrix``."""
        return self._grade(BATCHING, text_checks.check_batching, batch_captions_to_matrix_fn, pad_idx)

    def grade_decoder_shapes(self, decoder, session, *, config=None, vocab_size=None):
        """Shapes of the decoder's tensors on the course feed (32 embeddings, 32 x 20 token ids) and of
        its layers' variables.

        decoder: the course's tensors (img_embeds, sentences, h0, ..., loss) and layers as attributes,
        variables initialised in ``session``. config (sizes) and vocab_size default to the decoder's
        own ``.config`` and ``.vocab_size``.
        """
        return self._grade(DECODER_SHAPES, self._needs(decoder, decoder_checks.check_decoder_shapes), decoder,
                           session, config, vocab_size)

    def grade_random_init_loss(self, decoder, session, *, vocab_size=None, config=None):
        """Every tensor recomputed in numpy on captions with PAD tails; the loss from the decoder's own
        logits; and, before training, a loss close to ln(vocab_size)."""
        return self._grade(DECODER_LOSS, self._needs(decoder, decoder_checks.check_decoder_values), decoder,
                           session, config, vocab_size)

    def grade_generate_batch(self, generate_batch_fn):
        """generate_batch_fn(decoder, images_embeddings, indexed_captions, batch_size, max_len=, rng=) on a
        problem where every row can be traced back to its image and caption."""
        return self._grade(GENERATE_BATCH, training_checks.check_generate_batch, generate_batch_fn)

    def grade_validation_loss(self, decoder, session, val_embeds, val_captions, vocab, *, threshold=None, data=None):
        """The trained decoder's validation loss, computed here on fixed seeded (image, caption) pairs.

        threshold: default VALIDATION_LOSS_THRESHOLDS[data]; data ('shapes', 'flickr8k', 'coco')
        defaults to a guess from the vocabulary size.
        """
        return self._grade(VALIDATION_LOSS, self._needs(decoder, training_checks.check_validation_loss), decoder,
                           session, val_embeds, val_captions, vocab, threshold, data)

    def grade_run(self, run_dir, *, threshold=None):
        """The best validation loss in RUN_DIR/history.json, against the threshold of the run's data."""
        from capstone.support import run_dir as runs

        data = training_checks.run_data(run_dir)
        threshold = VALIDATION_LOSS_THRESHOLDS[data] if threshold is None else threshold
        return self._grade(VALIDATION_LOSS, training_checks.check_loss_value, runs.best_validation_loss(run_dir),
                           threshold, data, f"best in {run_dir}/history.json")

    def grade_sampler(self, one_step_fn, generate_caption_fn):
        """one_step_fn(layers, current_word, lstm_c, lstm_h) and generate_caption_fn(model, embedding=...)
        on a fixed trained model: the greedy captions must be the package FinalModel's."""
        from capstone.grading import sampler

        return self._grade(SAMPLER, sampler.check_sampler, one_step_fn, generate_caption_fn)

    @property
    def all_passed(self):
        return all(part in self.results and self.results[part].passed for part in PARTS)

    def table(self):
        """The grades as text: part, PASS/FAIL/TODO, expected, received; then what failed and why."""
        lines = [f"{'part':18s} {'result':6s} {'expected':32s} received", "-" * 92]
        for part in PARTS:
            result = self.results.get(part)
            if result is None:
                lines.append(f"{part:18s} {'-':6s} not graded")
                continue
            lines.append(f"{part:18s} {result.verdict:6s} {short(result.expected):32s} {short(result.received)}")
        lines += [f"{result.part}: {result.message}" for result in self.results.values() if not result.passed]
        passed = sum(result.passed for result in self.results.values())
        todo = sum(not result.done for result in self.results.values())
        lines.append(f"{passed}/{len(PARTS)} parts passed" + (f" ({todo} {NOT_DONE})" if todo else ""))
        return "\n".join(lines)

    def summary(self, file=None):
        """Print ``table()`` (to stdout, or ``file``)."""
        print(self.table(), file=file or sys.stdout)
