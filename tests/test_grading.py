"""The local grader: the reference passes every part, broken learner code fails with a useful message."""

import math

import numpy as np
import pytest
import tensorflow as tf

from capstone.grading import __main__ as grading_cli
from capstone.grading import grader as grading
from capstone.grading import reference as grading_reference
from capstone.support import run_dir as runs
from capstone.captions import (END, PAD, SPECIAL_TOKENS, START, UNK, batch_captions_to_matrix,
                               caption_tokens_to_indices, generate_vocabulary, split_sentence)
from capstone.config import ModelConfig, TrainingConfig
from capstone.decoder import Decoder
from capstone.errors import CapstoneError
from capstone.grading import Grader

v1 = tf.compat.v1
SMALL = ModelConfig(img_embed_size=16, img_embed_bottleneck=8, word_embed_size=12, lstm_units=20, logit_bottleneck=8)
CAPTIONS = [["A red circle.", "the red circle"], ["a blue square", "Blue square on grey"],
            ["a red square", "one red square here"]]


@pytest.fixture(scope="module")
def vocab():
    return generate_vocabulary(CAPTIONS, min_count=2)


def test_reference_functions_pass_with_the_course_summaries(vocab):
    grader = Grader()
    result = grader.grade_vocabulary(generate_vocabulary, CAPTIONS, min_count=2)
    # red, circle, a, square, blue (twice or more) + 4 specials
    assert result.passed and result.expected == result.received == [9, 9, 1], result
    result = grader.grade_indexing(caption_tokens_to_indices, CAPTIONS, vocab)
    # one START, one END, words between, UNK for the 7 rare words (the, on, grey, one, here...)
    assert result.passed and result.received[:2] == [1, 1] and result.received[4] == 1
    assert result.received[5] == sum(1 for caps in CAPTIONS for c in caps for w in split_sentence(c) if w not in vocab)
    result = grader.grade_batching(batch_captions_to_matrix, vocab[PAD])
    pad = vocab[PAD]
    assert result.passed and result.expected == [[[1, 2, 3], [4, 5, pad]], [[1, 2], [4, 5]], [[1, 2, 3], [4, 5, pad]]]
    assert "3 examples and 20 random batches" in result.message


def test_vocabulary_without_specials_fails_and_says_so():
    def no_specials(train_captions, min_count=5):
        vocab = generate_vocabulary(train_captions, min_count)
        words = sorted(token for token in vocab if token not in SPECIAL_TOKENS)
        return {word: i for i, word in enumerate(words)}

    result = Grader().grade_vocabulary(no_specials, CAPTIONS, min_count=2)
    assert not result.passed
    assert result.expected == [9, 9, 1] and result.received == [5, 5, 0]
    assert "special tokens ['#PAD#', '#UNK#', '#START#', '#END#'] are missing" in result.message


def test_vocabulary_that_ignores_min_count_or_repeats_indices_fails():
    def every_word(train_captions):  # the course's signature: min_count is fixed at 5
        words = {w for caps in train_captions for c in caps for w in split_sentence(c)} | set(SPECIAL_TOKENS)
        return {w: i for i, w in enumerate(sorted(words))}

    result = Grader().grade_vocabulary(every_word, CAPTIONS * 2)  # a, red and square occur 5 times or more
    assert not result.passed and result.expected == [7, 7, 1] and result.received == [14, 14, 1]
    assert result.message == ("0 tokens missing [] and 7 extra ['blue', 'circle', 'grey', 'here', 'on']: keep every "
                              "token that occurs at least 5 times")
    result = Grader().grade_vocabulary(lambda caps, min_count: {t: 0 for t in generate_vocabulary(caps, min_count)},
                                       CAPTIONS, min_count=2)
    assert not result.passed and result.received == [9, 1, 1] and "0..8, each used once" in result.message


def test_indexing_without_end_fails_naming_the_caption(vocab):
    def no_end(captions, vocab):
        return [[[vocab[START]] + [vocab.get(w, vocab[UNK]) for w in split_sentence(c)] for c in caps]
                for caps in captions]

    result = Grader().grade_indexing(no_end, CAPTIONS, vocab)
    assert not result.passed
    assert result.expected[1] == 1 and result.received[1] > 1  # the course's "distinct last tokens"
    first = [vocab[START], vocab["a"], vocab["red"], vocab["circle"]]
    assert result.message == (f"image 0 caption 0 'A red circle.': expected {first + [vocab[END]]}, received "
                              f"{first}; every caption ends with END (index {vocab[END]})")


def test_indexing_that_crashes_or_drops_unknown_words_fails(vocab):
    result = Grader().grade_indexing(lambda captions, vocab: [[[vocab[w] for w in split_sentence(c)] for c in caps]
                                                              for caps in captions], CAPTIONS, vocab)
    assert not result.passed and result.message.startswith("caption_tokens_to_indices raised KeyError")
    result = Grader().grade_indexing(lambda captions, vocab: caption_tokens_to_indices(captions[:2], vocab),
                                     CAPTIONS, vocab)
    assert not result.passed and "expected 3 images with their 6 captions, received 2 images" in result.message
    with pytest.raises(CapstoneError, match="the vocabulary has no"):
        Grader().grade_indexing(caption_tokens_to_indices, CAPTIONS, {"a": 0})


def test_batching_that_pads_on_the_left_fails_on_the_course_example():
    def left_padded(batch_captions, pad_idx, max_len=None):
        columns = max(map(len, batch_captions)) if max_len is None else min(max_len, max(map(len, batch_captions)))
        return np.array([[pad_idx] * (columns - len(c[:columns])) + list(c[:columns]) for c in batch_captions])

    result = Grader().grade_batching(left_padded, -1)
    assert not result.passed
    assert result.expected == [[1, 2, 3], [4, 5, -1]] and result.received == [[1, 2, 3], [-1, 4, 5]]
    assert result.message == ("batch_captions_to_matrix([[1, 2, 3], [4, 5]], -1, max_len=None): expected "
                              "[[1, 2, 3], [4, 5, -1]], received [[1, 2, 3], [-1, 4, 5]]; each caption starts "
                              "in column 0 and the padding goes at the end of its row")


def test_batching_that_ignores_max_len_fails_with_the_shape():
    def no_cut(batch_captions, pad_idx, max_len=None):
        return batch_captions_to_matrix(batch_captions, pad_idx)

    result = Grader().grade_batching(no_cut, 0)
    assert not result.passed and result.received == [[1, 2, 3], [4, 5, 0]] and result.expected == [[1, 2], [4, 5]]
    assert "max_len=2" in result.message and "shape must be (2, 2)" in result.message


class AllTokensDecoder(Decoder):
    """A learner's mistake: embeds every token, also the last one (which has no next token)."""

    def build_word_embeddings(self):
        self.word_embeds = self.word_embed(self.sentences)


class SummedLossDecoder(Decoder):
    """A learner's mistake: sums the cross-entropy instead of averaging it."""

    def build_loss(self):
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=self.flat_ground_truth,
                                                               logits=self.flat_token_logits)
        self.loss = tf.reduce_sum(xent * self.flat_loss_mask)


def initialised(decoder_class, vocab_size=30, **options):
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        decoder = decoder_class(vocab_size, 0, SMALL, **options)
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    return decoder, session


def test_reference_decoder_has_the_course_shapes_and_random_loss():
    decoder, session = initialised(Decoder)
    grader = Grader()
    result = grader.grade_decoder_shapes(decoder, session)
    assert result.passed, result
    assert result.received["h0"] == (32, 20) and result.received["word_embeds"] == (32, 19, 12)
    assert result.received["flat_hidden_states"] == (608, 20) and result.received["loss"] == ()
    assert result.received["flat_token_logits"] == (608, 30)
    result = grader.grade_random_init_loss(decoder, session)
    assert result.passed and result.expected == round(math.log(30), 4)
    assert abs(result.received - math.log(30)) < 0.05


def test_decoder_with_wrong_shapes_fails_naming_each_tensor():
    decoder, session = initialised(AllTokensDecoder)
    result = Grader().grade_decoder_shapes(decoder, session)
    assert not result.passed
    assert result.received["word_embeds"] == (32, 20, 12) and result.received["flat_hidden_states"] == (640, 20)
    assert result.received["loss"].startswith("error: InvalidArgumentError")
    assert result.message.startswith("word_embeds: expected (32, 19, 12), received (32, 20, 12); "
                                     "flat_hidden_states: expected (608, 20), received (640, 20); "
                                     "flat_token_logits: expected (608, 30), received (640, 30); loss: expected (), ")


def test_summed_loss_fails_the_random_init_part():
    decoder, session = initialised(SummedLossDecoder)
    result = Grader().grade_random_init_loss(decoder, session)
    assert not result.passed and result.expected == round(math.log(30), 4) and result.received > 100
    assert "close to ln(30) = 3.401" in result.message and "mean cross-entropy over the non-PAD" in result.message


def test_a_decoder_without_config_needs_the_sizes():
    decoder, session = initialised(Decoder)
    course_style = type("decoder", (), {name: getattr(decoder, name) for name in
                                        ("img_embeds", "sentences", *grading.DECODER_TENSORS)})
    with pytest.raises(CapstoneError, match="pass config=ModelConfig"):
        Grader().grade_decoder_shapes(course_style, session)
    assert Grader().grade_decoder_shapes(course_style, session, config=SMALL, vocab_size=30).passed


def test_validation_loss_threshold_and_summary_table(capsys):
    grader = Grader()
    assert grader.grade_validation_loss(0.9).passed
    assert grader.grade_validation_loss(2.5, threshold=grading.VALIDATION_LOSS_THRESHOLDS["coco"]).passed
    failed = grader.grade_validation_loss(1.5)
    assert not failed.passed and failed.expected == "< 1.2" and failed.received == 1.5
    assert not grader.grade_validation_loss(float("nan")).passed
    assert not grader.grade_validation_loss("low").passed
    grader.grade_batching(batch_captions_to_matrix, 0)
    grader.summary()
    lines = capsys.readouterr().out.splitlines()
    assert lines == grader.table().splitlines()
    assert lines[0].split() == ["part", "result", "expected", "received"]
    assert any(line.split()[:2] == ["batching", "PASS"] for line in lines)
    assert sum("not graded" in line for line in lines) == 4
    assert "validation loss: the validation loss must be a number" in lines
    assert lines[-1] == "1/6 parts passed" and not grader.all_passed


def fake_run(path, val_losses):
    runs.save_run(runs.Run(str(path), {PAD: 0, UNK: 1, START: 2, END: 3, "a": 4}, ModelConfig(), TrainingConfig()))
    runs.write_history(str(path), [{"epoch": i + 1, "train_loss": 2.0, "val_loss": loss}
                                   for i, loss in enumerate(val_losses)])
    return str(path)


def test_grading_a_run_directory_from_the_command_line(tmp_path, capsys):
    good = fake_run(tmp_path / "good", [1.9, 1.1, 1.15])
    assert grading_cli.main(["--run", good]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:5] == ["validation", "loss", "PASS", "<", "1.2"] and line.split()[-1] == "1.1"
               for line in out.splitlines())
    assert grading_cli.main(["--run", good, "--threshold", "1.0"]) == 1
    assert "validation loss 1.100 is not below 1.0" in capsys.readouterr().out
    no_val = fake_run(tmp_path / "no_val", [None])
    assert grading_cli.main(["--run", no_val]) == 2
    assert "no epoch with a validation loss" in capsys.readouterr().err
    assert grading_cli.main(["--run", str(tmp_path / "nowhere")]) == 2
    assert "run directory does not exist" in capsys.readouterr().err


def test_builtin_problem_is_small_and_learnable_shapes():
    (train_embeds, train_captions), (val_embeds, val_captions) = grading_reference.builtin_problem(n_train=20, n_val=5)
    assert train_embeds.shape == (20, 49) and val_embeds.shape == (5, 49) and train_embeds.dtype == np.float32
    assert all(len(caps) == 5 for caps in train_captions + val_captions)
    # one-hot slots: each drawn shape sets exactly one kind, one colour, one size
    assert np.all(train_embeds[:, :5].sum(axis=1) == 1) and np.all(train_embeds[:, -4:].sum(axis=1) == 1)


def test_python_m_capstone_grading_passes_every_part_for_the_reference(capsys):
    assert grading_cli.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "6/6 parts passed"
    for part in grading.PARTS:
        assert any(line.startswith(part) and line[18:].split()[0] == "PASS" for line in lines), part
