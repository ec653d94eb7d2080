"""The local grader: the reference passes every part, broken learner code fails with a useful message."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from capstone.grading import __main__ as grading_cli
from capstone.grading import grader as grading
from capstone.grading import problem as grading_problem
from capstone.grading import decoder_checks, training_checks
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
    assert "7 extra ['blue', 'circle', 'grey', 'here', 'on']" in result.message
    assert result.message.startswith("generate_vocabulary(train_captions): expected 7 tokens")
    result = Grader().grade_vocabulary(lambda caps, min_count: {t: 0 for t in generate_vocabulary(caps, min_count)},
                                       CAPTIONS, min_count=2)
    assert not result.passed and result.received == [9, 1, 1] and "0..8, each used once" in result.message, result


def test_indexing_without_end_fails_naming_the_caption(vocab):
    def no_end(captions, vocab):
        return [[[vocab[START]] + [vocab.get(w, vocab[UNK]) for w in split_sentence(c)] for c in caps]
                for caps in captions]

    result = Grader().grade_indexing(no_end, CAPTIONS, vocab)
    assert not result.passed
    assert result.expected[1] == 1 and result.received[1] > 1  # the course's "distinct last tokens"
    first = [vocab[START], vocab["a"], vocab["red"], vocab["circle"]]
    assert result.message == (f"train_captions: image 0 caption 0 'A red circle.': expected {first + [vocab[END]]}, received "
                              f"{first}; every caption ends with END (index {vocab[END]})")


def test_indexing_that_crashes_or_drops_unknown_words_fails(vocab):
    result = Grader().grade_indexing(lambda captions, vocab: [[[vocab[w] for w in split_sentence(c)] for c in caps]
                                                              for caps in captions], CAPTIONS, vocab)
    assert not result.passed and result.message.startswith("caption_tokens_to_indices(train_captions, vocab) raised KeyError")
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


def initialised(vocab_size=30):
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        decoder = Decoder(vocab_size, 1, SMALL)  # PAD at 1, as in a sorted vocabulary
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    return decoder, session


def test_reference_decoder_has_the_course_shapes_and_loss():
    decoder, session = initialised()
    grader = Grader()
    result = grader.grade_decoder_shapes(decoder, session)
    assert result.passed, result
    assert result.received["h0"] == (32, 20) and result.received["word_embeds"] == (32, 19, 12)
    assert result.received["flat_hidden_states"] == (608, 20) and result.received["flat_token_logits"] == (608, 30)
    result = grader.grade_random_init_loss(decoder, session)
    assert result.passed and result.expected == round(math.log(30), 4), result
    assert abs(result.received - math.log(30)) < 0.05 and "PAD tails" in result.message


def test_decoder_sizes_are_keyword_only_and_a_course_style_object_needs_them():
    decoder, session = initialised()
    with pytest.raises(TypeError):
        Grader().grade_decoder_shapes(decoder, session, SMALL, 30)
    names = ("img_embeds", "sentences", "pad_idx", "c0", *decoder_checks.DECODER_TENSORS, *decoder.layers._fields)
    course_style = type("decoder", (), {name: getattr(decoder, name) for name in names})
    with pytest.raises(CapstoneError, match="pass config=ModelConfig"):
        Grader().grade_decoder_shapes(course_style, session)
    assert Grader().grade_decoder_shapes(course_style, session, config=SMALL, vocab_size=30).passed
    assert Grader().grade_random_init_loss(course_style, session, config=SMALL, vocab_size=30).passed


def test_blank_code_is_not_done_yet_and_the_summary_counts_it(capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError()

    grader = Grader()
    results = [grader.grade_vocabulary(blank, CAPTIONS, min_count=2), grader.grade_indexing(blank, CAPTIONS, {
        PAD: 0, UNK: 1, START: 2, END: 3}), grader.grade_batching(blank, 0), grader.grade_decoder_shapes(None, None),
        grader.grade_random_init_loss(None, None), grader.grade_generate_batch(blank),
        grader.grade_validation_loss(None, None, None, None, {}), grader.grade_sampler(blank, blank)]
    assert all(not r.passed and not r.done and r.verdict == "TODO" for r in results), results
    assert all("not done yet" in r.message for r in results)
    grader.summary()
    assert capsys.readouterr().out.splitlines()[-1] == "0/8 parts passed (8 not done yet)"


def test_grader_inputs_are_copies():
    captions = [caps[:] for caps in CAPTIONS]

    def vandal(train_captions, min_count=5):
        train_captions.clear()
        return generate_vocabulary(CAPTIONS, min_count)

    Grader().grade_vocabulary(vandal, captions, min_count=2)
    assert captions == CAPTIONS


def test_validation_loss_thresholds_follow_the_data(tmp_path):
    assert grading.VALIDATION_LOSS_THRESHOLDS["shapes"] < grading.VALIDATION_LOSS_THRESHOLDS["flickr8k"]
    assert training_checks.infer_data(63) == "shapes" and training_checks.infer_data(825) == "flickr8k"
    assert training_checks.infer_data(8769) == "coco" and training_checks.infer_data(900, "inception_v3") == "coco"
    assert training_checks.infer_data(63, data="Flickr8k-dev") == "flickr8k"
    run = fake_run(tmp_path / "run", [2.9])  # 5 tokens: shapes-sized, 2.9 fails there
    assert not Grader().grade_run(run).passed
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["data"] = {"source": "captions", "captions": ["/data/flickr8k/captions.csv"], "images": 6000}  # train's record
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    result = Grader().grade_run(run)
    assert result.passed and result.expected == "< 3.3 (flickr8k)", result


def test_validation_loss_table(capsys, tmp_path):
    grader = Grader()
    assert grader.grade_run(fake_run(tmp_path / "good", [0.9])).passed
    assert not grader.grade_run(fake_run(tmp_path / "bad", [1.5])).passed
    grader.grade_batching(batch_captions_to_matrix, 0)
    grader.summary()
    lines = capsys.readouterr().out.splitlines()
    assert lines == grader.table().splitlines()
    assert lines[0].split() == ["part", "result", "expected", "received"]
    assert any(line.split()[:2] == ["batching", "PASS"] for line in lines)
    assert sum("not graded" in line for line in lines) == 6
    assert any(line.startswith("validation loss: validation loss 1.500") for line in lines)
    assert lines[-1] == "1/8 parts passed" and not grader.all_passed


def fake_run(path, val_losses):
    runs.save_run(runs.Run(str(path), {PAD: 0, UNK: 1, START: 2, END: 3, "a": 4}, ModelConfig(), TrainingConfig()))
    runs.write_history(str(path), [{"epoch": i + 1, "train_loss": 2.0, "val_loss": loss}
                                   for i, loss in enumerate(val_losses)])
    return str(path)


def test_grading_a_run_directory_from_the_command_line(tmp_path, capsys):
    good = fake_run(tmp_path / "good", [1.9, 1.1, 1.15])
    assert grading_cli.main(["--run", good]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:6] == ["validation", "loss", "PASS", "<", "1.2", "(shapes)"] and line.split()[-1] == "1.1"
               for line in out.splitlines())
    assert grading_cli.main(["--run", good, "--threshold", "1.0"]) == 1
    out = capsys.readouterr().out
    assert "validation loss 1.100 (best in " in out and "is not in (0, 1.0)" in out
    no_val = fake_run(tmp_path / "no_val", [None])
    assert grading_cli.main(["--run", no_val]) == 2
    assert "no epoch with a validation loss" in capsys.readouterr().err
    assert grading_cli.main(["--run", str(tmp_path / "nowhere")]) == 2
    assert "run directory does not exist" in capsys.readouterr().err


def test_builtin_problem_is_small_and_learnable_shapes():
    (train_embeds, train_captions), (val_embeds, val_captions) = grading_problem.builtin_problem(n_train=20, n_val=5)
    assert train_embeds.shape == (20, 49) and val_embeds.shape == (5, 49) and train_embeds.dtype == np.float32
    assert all(len(caps) == 5 for caps in train_captions + val_captions)
    # one-hot slots: each drawn shape sets exactly one kind, one colour, one size
    assert np.all(train_embeds[:, :5].sum(axis=1) == 1) and np.all(train_embeds[:, -4:].sum(axis=1) == 1)


def test_python_m_capstone_grading_passes_every_part_for_the_reference(capsys):
    assert grading_cli.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "8/8 parts passed"
    for part in grading.PARTS:
        assert any(line.startswith(part) and line[18:].split()[0] == "PASS" for line in lines), part
