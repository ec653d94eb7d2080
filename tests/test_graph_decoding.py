"""In-graph greedy, sampled and beam decoding: the Python loops' tokens, one Session.run per batch, never #UNK#."""

import threading

import numpy as np
import pytest

import tensorflow as tf

from capstone.captions import END, PAD, START, UNK
from capstone.config import ModelConfig, TrainingConfig
from capstone.decoder import SCOPE
from capstone.errors import CapstoneError
from capstone.final_model import FinalModel
from capstone.training import train
from decoding_oracle import beam_search_tokens_stepwise, greedy_tokens_stepwise
from synthetic import make_problem, scene_captions, untrained_run

SMALL = ModelConfig(img_embed_bottleneck=32, word_embed_size=32, lstm_units=64, logit_bottleneck=32)


@pytest.fixture(scope="module")
def problem():
    return make_problem()


@pytest.fixture(scope="module")
def model(problem, tmp_path_factory):
    """A FinalModel trained for a few seconds on the synthetic scenes (captions it well, not perfectly)."""
    (train_e, train_c, _), (val_e, val_c, _) = problem
    path = str(tmp_path_factory.mktemp("run"))
    config = TrainingConfig(batch_size=32, n_epochs=2, n_batches_per_epoch=100, n_validation_batches=5, min_count=1)
    train(path, train_e, train_c, val_e, val_c, SMALL, config, progress=False, log=lambda _: None)
    return FinalModel.load(path)


class CountingSession:
    """Wraps a Session and counts its run calls."""

    def __init__(self, session):
        self.session, self.runs = session, 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.session.run(*args, **kwargs)


def test_greedy_in_graph_gives_the_python_loops_tokens(model, problem):
    (_, _, _), (val_e, _, val_scenes) = problem
    for max_len in (20, 3, 1):
        in_graph = model.sample_tokens(embeddings=val_e, max_len=max_len)
        assert in_graph == greedy_tokens_stepwise(model, val_e, max_len=max_len)
        if max_len < 4:  # every scene caption is longer: all are cut
            assert {len(tokens) for tokens in in_graph} == {max_len}
    captions = model.captions(embeddings=val_e)
    assert np.mean([c in scene_captions(*s) for c, s in zip(captions, val_scenes)]) >= 0.9
    assert model.sample_tokens(embeddings=val_e[:2], max_len=0) == [[], []]
    assert model.sample_tokens(embeddings=val_e[:0]) == []


def test_greedy_in_graph_matches_on_an_untrained_coco_sized_model(tmp_path):
    """Near-uniform probabilities over 8769 tokens: any difference in the arithmetic would show."""
    model = FinalModel.load(untrained_run(tmp_path, 8769, ModelConfig(img_embed_size=64)))
    embeds = np.random.default_rng(1).random((24, 64), dtype=np.float32)
    in_graph = model.sample_tokens(embeddings=embeds, max_len=12)
    assert in_graph == greedy_tokens_stepwise(model, embeds, max_len=12)
    assert len({tuple(tokens) for tokens in in_graph}) > 1
    banned = set(model.banned_tokens)
    assert not banned & {token for tokens in in_graph for token in tokens}
    beams = model.beam_search_tokens(embeddings=embeds[:4], beam_size=3, max_len=6)
    reference = beam_search_tokens_stepwise(model, embeds[:4], beam_size=3, max_len=6)
    assert [[t for t, _ in found] for found in beams] == [[t for t, _ in found] for found in reference]
    np.testing.assert_allclose([[s for _, s in f] for f in beams], [[s for _, s in f] for f in reference], atol=1e-5)


@pytest.mark.parametrize("beam_size, max_len, alpha, no_repeat", [
    (1, 20, 1.0, 0), (3, 20, 1.0, 0), (5, 20, 0.0, 0), (3, 4, 0.5, 0), (12, 20, 1.0, 0), (3, 0, 1.0, 0),
    (3, 20, 1.0, 1), (12, 20, 1.0, 2)])
def test_beam_in_graph_matches_the_numpy_beam_search(model, problem, beam_size, max_len, alpha, no_repeat):
    """beam_size 12 with 19 tokens (3 banned) leaves fewer finite candidates than 2 * beam_size; with
    no_repeat, images whose search has ended (and empty slots) sit beside those still searching."""
    (_, _, _), (val_e, _, _) = problem
    embeds = val_e[:12]
    in_graph = model.beam_search_tokens(embeddings=embeds, beam_size=beam_size, max_len=max_len, length_alpha=alpha,
                                        no_repeat_ngram=no_repeat)
    reference = beam_search_tokens_stepwise(model, embeds, beam_size=beam_size, max_len=max_len, length_alpha=alpha,
                                            no_repeat_ngram=no_repeat)
    assert len(in_graph) == len(reference) == 12
    for found, expected in zip(in_graph, reference):
        assert [tokens for tokens, _ in found] == [tokens for tokens, _ in expected]
        # the batch is computed as one matrix here and k rows at a time there: float32 rounding differs
        np.testing.assert_allclose([s for _, s in found], [s for _, s in expected], atol=1e-5)
        assert len(found) == (1 if max_len == 0 else beam_size)


def test_one_session_run_per_batch(model, problem):
    (_, _, _), (val_e, _, val_scenes) = problem
    model.session = counting = CountingSession(model.session)
    try:
        greedy = model.captions(embeddings=val_e)
        assert counting.runs == 1
        beams = model.beam_captions(embeddings=val_e, beam_size=3)
        assert counting.runs == 2
        model.captions(embeddings=val_e, sample=True, temperature=0.7)
        assert counting.runs == 3
        greedy_tokens_stepwise(model, val_e[:1])
        assert counting.runs > 5  # the Python loop: one for the state, then one per word
    finally:
        model.session = counting.session
    assert len(greedy) == len(beams) == len(val_e)
    assert np.mean([found[0][0] in scene_captions(*s) for found, s in zip(beams, val_scenes)]) >= 0.9


def test_concurrent_captioning_from_threads_agrees_with_one_thread(model, problem):
    (_, _, _), (val_e, _, _) = problem
    expected_greedy = model.captions(embeddings=val_e)
    expected_beams = model.beam_captions(embeddings=val_e, beam_size=2)
    results, errors = [], []

    def work(i):
        try:
            for _ in range(3):
                results.append(model.captions(embeddings=val_e) == expected_greedy
                               if i % 2 else model.beam_captions(embeddings=val_e, beam_size=2) == expected_beams)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == [True] * 12


def test_bad_decoding_arguments_are_clear_errors(model, problem):
    (_, _, _), (val_e, _, _) = problem
    for bad in (0, -2, 2.5):
        with pytest.raises(CapstoneError, match="beam size must be a positive integer"):
            model.beam_captions(embeddings=val_e[:1], beam_size=bad)
    with pytest.raises(CapstoneError, match="max_len must be a non-negative integer"):
        model.captions(embeddings=val_e[:1], max_len=-1)
    with pytest.raises(CapstoneError, match=r"embeddings: the show_and_tell decoder .* expects shape \[N, 32\], got \[2, 5\]"):
        model.beam_captions(embeddings=np.zeros((2, 5)))
    assert model.vocab[START] not in sum(model.sample_tokens(embeddings=val_e), [])
    assert all(tokens[-1] == model.vocab[END] for tokens in model.sample_tokens(embeddings=val_e))


def run_that_loves_unk(path, vocab_size=40):
    """An untrained run whose most probable next word, by far, is #UNK#."""
    def loves_unk(vocab):
        value = np.zeros(vocab_size, np.float32)
        value[vocab[UNK]] = 8.0  # softmax puts ~99% on UNK
        return value
    return run_with_token_bias(path, vocab_size, loves_unk)


def run_with_token_bias(path, vocab_size, bias_for):
    """An untrained run whose token logits' bias is bias_for(vocab) [vocab_size]."""
    path = untrained_run(path, vocab_size, ModelConfig(img_embed_size=8, lstm_units=16, img_embed_bottleneck=8,
                                                       word_embed_size=8, logit_bottleneck=8))
    model = FinalModel.load(path)
    value = bias_for(model.vocab)
    model.close()
    graph = tf.Graph()
    with graph.as_default():
        from capstone.decoder import Decoder
        Decoder(vocab_size, 0, ModelConfig(img_embed_size=8, lstm_units=16, img_embed_bottleneck=8, word_embed_size=8,
                                           logit_bottleneck=8))
        bias = [v for v in tf.compat.v1.global_variables() if v.name == f"{SCOPE}/token_logits/bias:0"][0]
        saver = tf.compat.v1.train.Saver(tf.compat.v1.global_variables(scope=SCOPE))
        with tf.compat.v1.Session(graph=graph) as session:
            saver.restore(session, str(path) + "/checkpoints/model-0")
            bias.load(value, session)
            saver.save(session, str(path) + "/checkpoints/model", global_step=0, write_meta_graph=False)
    return path


def test_no_decoder_ever_says_unk_or_drops_a_word(tmp_path):
    model = FinalModel.load(run_that_loves_unk(tmp_path))
    never = {model.vocab[t] for t in (PAD, UNK, START)}
    embeds = np.random.default_rng(0).random((16, 8), dtype=np.float32)
    probs, _ = model.step([model.vocab[START]] * 16, model.initial_state(embeddings=embeds))
    assert (probs.argmax(axis=1) == model.vocab[UNK]).all()  # what an unguarded decoder would say
    rng = np.random.default_rng(0)
    decoded = (model.sample_tokens(embeddings=embeds, max_len=8)
               + model.sample_tokens(embeddings=embeds, max_len=8, sample=True, temperature=2.0, rng=rng)
               + [tokens for found in model.beam_search_tokens(embeddings=embeds, beam_size=3, max_len=8)
                  for tokens, _ in found])
    assert decoded and all(tokens for tokens in decoded)
    assert not never & {token for tokens in decoded for token in tokens}
    for ids, text in zip(model.sample_tokens(embeddings=embeds, max_len=8), model.captions(embeddings=embeds, max_len=8)):
        words = [model.inverse_vocab[i] for i in ids if i != model.vocab[END]]
        assert text.split() == words  # nothing silently dropped


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampled_words_follow_the_course_temperature(tmp_path, temperature):
    """The in-graph draw is the course's: p ** (1 / t), renormalised, banned words never (20,000 first words)."""
    model = FinalModel.load(run_with_token_bias(
        tmp_path, 40, lambda vocab: np.random.default_rng(3).normal(0.0, 1.5, 40).astype(np.float32)))
    image = np.random.default_rng(0).random((1, 8), dtype=np.float32)
    probs, _ = model.step([model.vocab[START]], model.initial_state(embeddings=image))
    allowed = np.ones(40, bool)
    allowed[[model.vocab[t] for t in (PAD, UNK, START)]] = False
    expected = np.where(allowed, probs[0].astype(np.float64) ** (1 / temperature), 0.0)
    expected /= expected.sum()
    plain = np.where(allowed, probs[0], 0.0) / np.where(allowed, probs[0], 0.0).sum()
    assert 0.5 * np.abs(expected - plain).sum() > 0.15     # the temperature matters here: the test can see it
    first = [tokens[0] for tokens in model.sample_tokens(embeddings=np.repeat(image, 20_000, axis=0), max_len=1,
                                                         sample=True, temperature=temperature,
                                                         rng=np.random.default_rng(1))]
    drawn = np.bincount(first, minlength=40) / len(first)
    assert 0.5 * np.abs(drawn - expected).sum() < 0.03     # total variation; ~0.015 expected from 20,000 draws


def test_sampling_in_the_graph_follows_its_seed(model, problem):
    (_, _, _), (val_e, _, _) = problem
    first = model.captions(embeddings=val_e, sample=True, temperature=1.5, rng=np.random.default_rng(7))
    again = model.captions(embeddings=val_e, sample=True, temperature=1.5, rng=np.random.default_rng(7))
    other = model.captions(embeddings=val_e, sample=True, temperature=1.5, rng=np.random.default_rng(8))
    assert first == again and first != other
    cold = model.captions(embeddings=val_e, sample=True, temperature=0.01, rng=np.random.default_rng(1))
    assert cold == model.captions(embeddings=val_e)  # a temperature near 0 is greedy
    with pytest.raises(CapstoneError, match="temperature must be > 0"):
        model.captions(embeddings=val_e, sample=True, temperature=0)
