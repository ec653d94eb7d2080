"""In-graph greedy and beam decoding give what the Python loops give, in one Session.run per batch."""

import threading

import numpy as np
import pytest

from capstone.captions import END, START
from capstone.config import ModelConfig, TrainingConfig
from capstone.errors import CapstoneError
from capstone.final_model import FinalModel
from capstone.training import train
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
        assert in_graph == model.sample_tokens_stepwise(embeddings=val_e, max_len=max_len)
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
    assert in_graph == model.sample_tokens_stepwise(embeddings=embeds, max_len=12)
    assert len({tuple(tokens) for tokens in in_graph}) > 1
    banned = set(model.banned_tokens)
    assert not banned & {token for tokens in in_graph for token in tokens}
    beams = model.beam_search_tokens(embeddings=embeds[:4], beam_size=3, max_len=6)
    reference = model.beam_search_tokens_stepwise(embeddings=embeds[:4], beam_size=3, max_len=6)
    assert [[t for t, _ in found] for found in beams] == [[t for t, _ in found] for found in reference]
    np.testing.assert_allclose([[s for _, s in f] for f in beams], [[s for _, s in f] for f in reference], atol=1e-5)


@pytest.mark.parametrize("beam_size, max_len, alpha", [(1, 20, 1.0), (3, 20, 1.0), (5, 20, 0.0), (3, 4, 0.5),
                                                       (12, 20, 1.0), (3, 0, 1.0)])
def test_beam_in_graph_matches_the_numpy_beam_search(model, problem, beam_size, max_len, alpha):
    """beam_size 12 with 19 tokens (2 banned) leaves fewer finite candidates than 2 * beam_size."""
    (_, _, _), (val_e, _, _) = problem
    embeds = val_e[:12]
    in_graph = model.beam_search_tokens(embeddings=embeds, beam_size=beam_size, max_len=max_len, length_alpha=alpha)
    reference = model.beam_search_tokens_stepwise(embeddings=embeds, beam_size=beam_size, max_len=max_len,
                                                  length_alpha=alpha)
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
        model.sample_tokens_stepwise(embeddings=val_e[:1])
        assert counting.runs > 3  # the Python loop: one for the state, then one per word
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
    with pytest.raises(CapstoneError, match="embeddings: expected shape"):
        model.beam_captions(embeddings=np.zeros((2, 5)))
    assert model.vocab[START] not in sum(model.sample_tokens(embeddings=val_e), [])
    assert all(tokens[-1] == model.vocab[END] for tokens in model.sample_tokens(embeddings=val_e))
