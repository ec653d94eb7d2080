"""Ensembles: several runs' decoders caption together, each word from the geometric mean of their probabilities.

The in-graph ensemble (``FinalModel(..., ensemble=...)``, ``evaluate --ensemble``) is checked against
the Python oracles of decoding_oracle.py driven by a step that averages the members' own
``FinalModel.step`` probabilities (normalised geometric mean), so a wrong average, a member left
out or members restored into each other's variables would all show.
"""

import json

import numpy as np
import pytest

from capstone.__main__ import main
from capstone.config import ModelConfig
from capstone.errors import CapstoneError
from capstone.fast.ensemble import ensemble_log_probs
from capstone.final_model import FinalModel
from decoding_oracle import beam_search
from synthetic import untrained_run

import tensorflow as tf

VOCAB = 300


def geometric_mean(probs):
    """The members' probabilities [M, N, vocab] -> their geometric mean per row, renormalised."""
    mean = np.exp(np.mean(np.log(np.asarray(probs, np.float64)), axis=0))
    return mean / mean.sum(axis=1, keepdims=True)


def test_the_ensemble_distribution_is_the_members_normalised_geometric_mean():
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=(4, 7)).astype(np.float32) * 3 for _ in range(3)]
    logits[1][0, 2] = -40.0  # one member finds a word near impossible: it stays near impossible
    probs = [np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)
             for x in logits]
    got = np.exp(ensemble_log_probs([tf.constant(x) for x in logits]).numpy())
    np.testing.assert_allclose(got, geometric_mean(probs), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-5)
    assert got[0, 2] < 1e-4 < np.mean(probs, axis=0)[0, 2]  # where a mixture would keep the others' share


@pytest.fixture(scope="module", params=["show_and_tell", "attention"])
def members(request, tmp_path_factory):
    """Two runs with different random weights on one vocabulary, and inputs they both read."""
    config = ModelConfig(img_embed_size=16, decoder=request.param)
    paths = [untrained_run(tmp_path_factory.mktemp("member"), VOCAB, config, seed=seed) for seed in (5, 6)]
    shape = (5, 3, 3, 16) if request.param == "attention" else (5, 16)
    return paths, np.random.default_rng(3).random(shape, dtype=np.float32)


def ensemble_step(models, embeddings):
    """Oracle step of an ensemble: the members' probabilities from their own graphs, their geometric
    mean. State: (c1, h1, c2, h2, ...)."""
    def step(words, state):
        extra = {"embeddings": np.repeat(embeddings, len(words), axis=0)} if models[0].attends else {}
        outputs = [m.step(words, state[2 * i:2 * i + 2], **extra) for i, m in enumerate(models)]
        return geometric_mean([probs for probs, _ in outputs]), tuple(s for _, new in outputs for s in new)
    return step


def oracle_beams(models, embeddings, beam_size, max_len, no_repeat_ngram=0):
    found = []
    for row in range(len(embeddings)):
        image = embeddings[row:row + 1]
        state = tuple(s for m in models for s in m.initial_state(embeddings=image))
        found.append(beam_search(ensemble_step(models, image), state, models[0].vocab["#START#"],
                                 models[0].vocab["#END#"], beam_size=beam_size, max_len=max_len,
                                 banned=models[0].banned_tokens, no_repeat_ngram=no_repeat_ngram))
    return found


def oracle_greedy(models, image, max_len):
    """The ensemble's most probable word at each step, END included."""
    step, end = ensemble_step(models, image), models[0].vocab["#END#"]
    state = tuple(s for m in models for s in m.initial_state(embeddings=image))
    tokens, word = [], models[0].vocab["#START#"]
    while len(tokens) < max_len and word != end:
        probs, state = step(np.array([word], np.int32), state)
        probs[:, models[0].banned_tokens] = 0.0
        word = int(probs[0].argmax())
        tokens.append(word)
    return tokens


def test_ensemble_beams_and_greedy_captions_are_those_of_the_members_mean_probabilities(members):
    paths, embeds = members
    singles = [FinalModel.load(path) for path in paths]
    ensemble = FinalModel.load(paths[0], ensemble=paths[1:])
    for no_repeat in (0, 2):
        beams = ensemble.beam_search_tokens(embeddings=embeds, beam_size=3, max_len=8, no_repeat_ngram=no_repeat)
        reference = oracle_beams(singles, embeds, beam_size=3, max_len=8, no_repeat_ngram=no_repeat)
        assert [[t for t, _ in f] for f in beams] == [[t for t, _ in f] for f in reference]
        np.testing.assert_allclose([[s for _, s in f] for f in beams], [[s for _, s in f] for f in reference],
                                   atol=1e-5)
    greedy = ensemble.sample_tokens(embeddings=embeds, max_len=8)
    assert greedy == [oracle_greedy(singles, embeds[row:row + 1], max_len=8) for row in range(len(embeds))]
    # The ensemble says something neither member says alone on some image: the test above shows them combined.
    alone = [m.sample_tokens(embeddings=embeds, max_len=8) for m in singles]
    assert greedy != alone[0] and greedy != alone[1]
    # The course's one-word API stays the first run's; the first word's probabilities are the ensemble's.
    state = ensemble.initial_state(embeddings=embeds)
    np.testing.assert_allclose(state[1], singles[0].initial_state(embeddings=embeds)[1], atol=1e-6)
    first = [ensemble_step(singles, embeds[row:row + 1])(
        np.array([ensemble.vocab["#START#"]], np.int32),
        tuple(s for m in singles for s in m.initial_state(embeddings=embeds[row:row + 1])))[0][0]
        for row in range(len(embeds))]
    np.testing.assert_allclose(ensemble.first_word_probabilities(embeddings=embeds), first, atol=1e-6)
    alone = singles[0].step(np.full(len(embeds), ensemble.vocab["#START#"], np.int32),
                            singles[0].initial_state(embeddings=embeds), embeddings=embeds)[0]
    np.testing.assert_allclose(singles[0].first_word_probabilities(embeddings=embeds), alone, atol=1e-6)


def test_a_run_in_an_ensemble_with_itself_captions_as_it_does_alone(members):
    paths, embeds = members
    alone, twice = FinalModel.load(paths[0]), FinalModel.load(paths[0], ensemble=paths[:1])
    assert twice.sample_tokens(embeddings=embeds, max_len=8) == alone.sample_tokens(embeddings=embeds, max_len=8)
    beams = [twice.beam_search_tokens(embeddings=embeds, beam_size=3, max_len=8),
             alone.beam_search_tokens(embeddings=embeds, beam_size=3, max_len=8)]
    assert [[t for t, _ in f] for f in beams[0]] == [[t for t, _ in f] for f in beams[1]]
    if alone.attends:  # the mean of two identical attention maps is the map
        for a, b in zip(twice.attention_maps(embeddings=embeds), alone.attention_maps(embeddings=embeds)):
            assert [w for w, _ in a] == [w for w, _ in b]
            np.testing.assert_allclose(np.array([m for _, m in a]), np.array([m for _, m in b]), atol=1e-6)


def test_the_caption_service_reads_pixels_into_an_ensemble():
    """Images through an encoder in front of an ensemble: a run voting with itself serves what it serves alone."""
    from capstone.support import run_dir as runs
    from capstone.web.captioner import Captioner
    from serve_support import SCENES, encode_file, load_model, scene_picture, tiny_encoder, trained_run_dir

    run = runs.load_run(trained_run_dir())
    alone = Captioner(load_model())
    twice = Captioner(FinalModel(run, encoder=tiny_encoder(), ensemble=[run]))
    for colour, shape in SCENES[:3]:
        buf = encode_file(scene_picture(colour, shape))
        served, reference = twice.describe(twice.pixels(buf)), alone.describe(alone.pixels(buf))
        assert served["caption"] == reference["caption"] and colour in served["caption"]
        assert [b["caption"] for b in served["beam_captions"]] == [b["caption"] for b in reference["beam_captions"]]
        assert [w["word"] for w in served["next_words"]] == [w["word"] for w in reference["next_words"]]
        np.testing.assert_allclose([w["probability"] for w in served["next_words"]],
                                   [w["probability"] for w in reference["next_words"]], atol=1e-6)


def test_runs_that_cannot_vote_together_are_refused_by_name(tmp_path):
    base = untrained_run(tmp_path / "base", VOCAB, ModelConfig(img_embed_size=16))
    other_words = untrained_run(tmp_path / "words", VOCAB - 1, ModelConfig(img_embed_size=16))
    attention = untrained_run(tmp_path / "attention", VOCAB, ModelConfig(img_embed_size=16, decoder="attention"))
    wider = untrained_run(tmp_path / "wider", VOCAB, ModelConfig(img_embed_size=24))
    for member, what in [(other_words, "vocabulary"), (attention, "decoder is attention"),
                         (wider, "image encoder")]:
        with pytest.raises(CapstoneError, match=f"{member}: cannot caption in an ensemble with {base}: its {what}"):
            FinalModel.load(base, ensemble=[member])
    with pytest.raises(CapstoneError, match="no-such-run"):
        FinalModel.load(base, ensemble=[str(tmp_path / "no-such-run")])


def test_evaluate_scores_an_ensemble_and_names_its_members(tmp_path, capsys):
    import pickle

    config = ModelConfig(img_embed_size=16)
    runs = [untrained_run(tmp_path / f"run{seed}", VOCAB, config, seed=seed) for seed in (5, 6, 7)]
    embeds = np.random.default_rng(4).random((4, 16), dtype=np.float32)
    fns = [f"img{i}.jpg" for i in range(4)]
    with open(tmp_path / "e.pickle", "wb") as f:
        pickle.dump(embeds, f)
    with open(tmp_path / "f.pickle", "wb") as f:
        pickle.dump(fns, f)
    captions = tmp_path / "captions.csv"
    captions.write_text("image,caption\n" + "".join(f"{fn},w1 w2 w3\n" for fn in fns))
    flags = ["--embeds", str(tmp_path / "e.pickle"), "--fns", str(tmp_path / "f.pickle"), "--captions", str(captions),
             "--beam", "2", "--max-len", "5"]
    assert main(["evaluate", runs[0], "--ensemble", *runs[1:], *flags]) == 0
    saved = json.load(open(tmp_path / "run5" / "metrics_e_beam2_ensemble3.json"))
    assert saved["beam2_ensemble3"]["ensemble"] == [str(tmp_path / name) for name in ("run5", "run6", "run7")]
    expected = FinalModel.load(runs[0], ensemble=runs[1:]).beam_captions(embeddings=embeds, beam_size=2, max_len=5)
    assert saved["beam2_ensemble3"]["captions"] == {fn: found[0][0] for fn, found in zip(fns, expected)}
    capsys.readouterr()
    # caption prints the same ensemble's captions
    assert main(["caption", runs[0], "--ensemble", *runs[1:], *flags[:4], "--beam", "2", "--max-len", "5"]) == 0
    printed = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert printed == [[fn, found[0][0]] for fn, found in zip(fns, expected)]
    for command in (["evaluate", runs[0], *flags], ["caption", runs[0], *flags[:4]], ["serve", runs[0]]):
        assert main([*command, "--ensemble", str(tmp_path / "missing")]) == 2
        assert f"{tmp_path / 'missing'}" in capsys.readouterr().err
        # an image after the list is swallowed by it: said so, before any model is loaded
        assert main([*command, "--ensemble", runs[1], str(captions)]) == 2
        assert f"--ensemble: {captions} is a file, not a run directory" in capsys.readouterr().err
