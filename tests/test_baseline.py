"""Nearest-neighbour caption retrieval (capstone.evaluation.baseline)."""

import math

import numpy as np
import pytest

from capstone.evaluation import baseline
from capstone.evaluation.baseline import consensus_caption, nearest_neighbour_captions, nearest_neighbours, pairwise_bleu
from capstone.errors import CapstoneError

FAMILIES = {
    "dog": ["a dog runs on the grass", "a brown dog running", "the dog plays in a park",
            "a dog is running outside", "dog running on grass"],
    "boat": ["a boat on the sea", "a red boat sails on the water", "a small boat on blue water",
             "boats sail on the sea", "a sailing boat at sea"],
    "food": ["a plate of pasta", "pasta with tomato sauce on a plate", "a white plate of food",
             "spaghetti on a plate", "a plate with pasta and sauce"],
}


def _clustered_data(rng, per_cluster=30, dim=16):
    """Training/query embeddings around one random centre per caption family."""
    centres = rng.standard_normal((len(FAMILIES), dim)) * 3
    train_embeds, train_captions, query_embeds, query_family = [], [], [], []
    for centre, (family, captions) in zip(centres, FAMILIES.items()):
        for _ in range(per_cluster):
            train_embeds.append(centre + rng.standard_normal(dim) * 0.3)
            # Each image gets 4 of its family's 5 captions, in a random order.
            train_captions.append(list(rng.permutation(captions)[:4]))
        for _ in range(5):
            query_embeds.append(centre + rng.standard_normal(dim) * 0.3)
            query_family.append(family)
    return np.array(train_embeds), train_captions, np.array(query_embeds), query_family


def test_each_query_gets_a_caption_of_its_own_cluster():
    train_embeds, train_captions, query_embeds, query_family = _clustered_data(np.random.default_rng(0))
    captions = nearest_neighbour_captions(train_embeds, train_captions, query_embeds, k=5)
    assert len(captions) == len(query_embeds) == 15
    for caption, family in zip(captions, query_family):
        assert caption in FAMILIES[family]


def test_k_1_returns_the_consensus_caption_of_the_single_neighbour():
    train_captions = [
        ["a cat sleeps", "a cat on a sofa"],
        # The consensus here is the caption that shares most n-grams with the other three.
        ["a man rides a horse", "a man riding a brown horse", "a man rides a brown horse", "a horse"],
    ]
    train_embeds = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.2]])
    query = np.array([[0.0, 5.0, 1.0]])  # same direction as image 1: cosine similarity 1
    [caption] = nearest_neighbour_captions(train_embeds, train_captions, query, k=1)
    assert caption == consensus_caption(train_captions[1]) == "a man rides a brown horse"


def test_nearest_neighbours_are_sorted_by_cosine_similarity():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    query = np.array([[10.0, 1.0], [0.0, -1.0]])
    # cos(q0, .) = 0.995, 0.0995, 0.774, -0.995 -> order 0, 2, 1, 3
    # cos(q1, .) = 0, -1, -0.707, 0             -> tie 0/3 by index, then 2, then 1
    assert nearest_neighbours(train, query, k=4).tolist() == [[0, 2, 1, 3], [0, 3, 2, 1]]
    assert nearest_neighbours(train, query, k=10).shape == (2, 4)  # k is capped at N


def test_chunked_search_matches_brute_force(monkeypatch):
    rng = np.random.default_rng(1)
    train, query = rng.standard_normal((50, 8)), rng.standard_normal((23, 8))
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)
    expected = np.argsort(-(unit(query) @ unit(train).T), axis=1)[:, :3]
    monkeypatch.setattr(baseline, "SIMILARITY_CHUNK_ELEMENTS", 120)  # 2 queries per chunk
    assert np.array_equal(nearest_neighbours(train, query, k=3), expected)


def test_pairwise_bleu_matches_a_hand_computed_value():
    bleu = pairwise_bleu([["the", "cat", "sat"], ["the", "cat", "ran"], []])
    # "the cat sat" against "the cat ran": p1 = 2/3, p2 = (1+1)/(2+1), p3 = (0+1)/(1+1),
    # p4 = (0+1)/(0+1) (add-one smoothing for n > 1); equal lengths -> no brevity penalty.
    expected = (2 / 3 * 2 / 3 * 1 / 2 * 1) ** (1 / 4)
    assert bleu[0, 1] == pytest.approx(expected) and bleu[1, 0] == pytest.approx(expected)
    assert bleu[0, 0] == pytest.approx(1.0)
    assert bleu[2].tolist() == [0.0, 0.0, 0.0] and bleu[0, 2] == 0.0  # empty caption
    # A shorter candidate is punished by the brevity penalty exp(1 - r / c).
    short = pairwise_bleu([["a", "dog"], ["a", "dog", "runs", "fast"]])
    assert short[0, 1] == pytest.approx(math.exp(1 - 4 / 2))


def test_consensus_caption_small_cases():
    assert consensus_caption([]) == ""
    assert consensus_caption(["only one"]) == "only one"
    assert consensus_caption(["a dog runs", "a dog is running", "a cat"]) == "a dog runs"


@pytest.mark.parametrize(
    "train, captions, query, k, message",
    [
        (np.zeros((3, 4)), [["a"]] * 3, np.zeros((2, 5)), 1, "5 features per image but train_embeds has 4"),
        (np.zeros((3, 4)), [["a"]] * 2, np.zeros((2, 4)), 1, "has 2 entries but train_embeds has 3 rows"),
        (np.zeros((3, 4)), ["a", "b", "c"], np.zeros((2, 4)), 1, r"train_captions\[0\]: expected a list"),
        (np.zeros((3, 4)), [["a"]] * 3, np.zeros((2, 4)), 0, "k: expected a positive"),
        (np.zeros(4), [["a"]], np.zeros((2, 4)), 1, "train_embeds: expected a 2-D"),
        (np.full((3, 4), np.nan), [["a"]] * 3, np.zeros((2, 4)), 1, "NaN"),
        (np.zeros((0, 4)), [], np.zeros((2, 4)), 1, "no rows"),
    ],
)
def test_bad_inputs_raise_capstone_error(train, captions, query, k, message):
    with pytest.raises(CapstoneError, match=message):
        nearest_neighbour_captions(train, captions, query, k=k)
