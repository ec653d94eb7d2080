"""Caption metrics (capstone.evaluation.metrics): known values, the Java and pure-Python paths, edge cases."""

import math
import os
import shutil

import pytest

from capstone.evaluation import metrics
from capstone.errors import CapstoneError
from capstone.evaluation.metrics import METRIC_NAMES, format_scores, score_captions

pytestmark = pytest.mark.filterwarnings("ignore:use_java=False")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")

# Four images whose captions share no content word, so CIDEr's idf weights are non-zero.
REFERENCES = {
    "dog.jpg": ["a brown dog runs on the grass", "a dog is running outside", "brown dog running"],
    "boat.jpg": ["a red boat sails on the sea", "a small boat on blue water"],
    "kids.jpg": ["two children play football in a park", "kids playing soccer"],
    "food.jpg": ["a plate of pasta with tomato sauce", "pasta on a white plate"],
}
IDENTICAL = {key: refs[0] for key, refs in REFERENCES.items()}
UNRELATED = {key: "zebra umbrella violin" for key in REFERENCES}


def _child_processes():
    """(pid, state) of this process's children, read from /proc (Linux)."""
    children = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            children.append((int(pid), fields[0]))
    return children


@pytest.mark.parametrize("use_java", [False, pytest.param(True, marks=needs_java)])
def test_identical_captions_score_one_and_unrelated_score_zero(use_java):
    same = score_captions(REFERENCES, IDENTICAL, use_java=use_java, meteor=False)
    assert list(same) == list(METRIC_NAMES)
    assert same["METEOR"] is None
    for n in range(1, 5):
        assert same[f"Bleu_{n}"] == pytest.approx(1.0, abs=1e-6)
    assert same["ROUGE_L"] == pytest.approx(1.0)
    # A candidate equal to one of its references gets cosine 1 with that one only, so CIDEr
    # is well above 1 (10 would mean equal to every reference).
    assert same["CIDEr"] > 2.0

    other = score_captions(REFERENCES, UNRELATED, use_java=use_java, meteor=False)
    assert other["Bleu_1"] < 1e-6 and other["Bleu_4"] < 1e-6
    assert other["ROUGE_L"] == 0.0 and other["CIDEr"] == 0.0


def test_cider_is_ten_when_the_candidate_equals_every_reference():
    references = {key: [refs[0]] * 3 for key, refs in REFERENCES.items()}
    scores = score_captions(references, IDENTICAL, use_java=False)
    assert scores["CIDEr"] == pytest.approx(10.0)


@pytest.mark.parametrize("use_java", [False, pytest.param(True, marks=needs_java)])
def test_bleu_1_matches_a_hand_computed_corpus_value(use_java):
    references = {"a": ["the cat is on the mat"], "b": ["a dog runs"]}
    candidates = {"a": "The the the cat sat.", "b": "a dog"}
    # Clipped unigram matches: image a: "the" min(3, 2) = 2, "cat" 1, "sat" 0 -> 3 of 5 words;
    # image b: 2 of 2. Corpus precision = (3 + 2) / (5 + 2). Candidate length c = 7 is
    # shorter than the reference length r = 6 + 3 = 9, so the brevity penalty is exp(1 - r/c).
    expected = (5 / 7) * math.exp(1 - 9 / 7)
    scores = score_captions(references, candidates, use_java=use_java, meteor=False)
    assert scores["Bleu_1"] == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.5367, abs=1e-4)


@needs_java
def test_java_and_python_tokenising_agree_on_simple_captions():
    candidates = {
        "dog.jpg": "a dog running on the grass",
        "boat.jpg": "a boat on the water",
        "kids.jpg": "children playing football",
        "food.jpg": "a plate with pasta",
    }
    with_java = score_captions(REFERENCES, candidates, use_java=True, meteor=False)
    without = score_captions(REFERENCES, candidates, use_java=False)
    for name in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"):
        assert with_java[name] == pytest.approx(without[name], abs=1e-6), name
    assert 0.3 < with_java["Bleu_1"] < 1.0  # a real, non-trivial value


@needs_java
def test_meteor_runs_handles_an_empty_candidate_and_leaves_no_java_process():
    references = dict(REFERENCES, **{"empty.jpg": ["a cat sleeps on a sofa", "a sleeping cat"]})
    candidates = dict(IDENTICAL, **{"empty.jpg": ""})
    scores = score_captions(references, candidates, use_java=True)
    # Every word of the corpus still matches, only the brevity penalty exp(1 - r/c) lowers
    # BLEU: c = the candidate words, r = for each image the reference length closest to its
    # candidate's (for the empty candidate that is the shortest reference, 3 words).
    c = sum(len(caption.split()) for caption in candidates.values())
    r = c + 3
    assert scores["Bleu_1"] == pytest.approx(math.exp(1 - r / c), rel=1e-6)
    assert scores["Bleu_4"] == pytest.approx(math.exp(1 - r / c), rel=1e-6)
    # METEOR is ~1 on the four copied captions and 0 on the empty one; it pools statistics
    # over the corpus, so the result is well inside (0.5, 1).
    assert 0.5 < scores["METEOR"] < 0.99
    assert _child_processes() == [], "a java process (or its zombie) was left behind"


@needs_java
def test_a_meteor_that_does_not_answer_is_killed_and_reported_as_none(monkeypatch):
    monkeypatch.setattr(metrics, "METEOR_TIMEOUT_S", 0.2)
    monkeypatch.setattr(metrics, "METEOR_TIMEOUT_PER_IMAGE_S", 0.0)
    with pytest.warns(RuntimeWarning, match="METEOR failed"):
        scores = score_captions(REFERENCES, IDENTICAL, use_java=True)
    assert scores["METEOR"] is None
    assert scores["Bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert _child_processes() == []


def test_without_java_it_warns_and_skips_meteor(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="java not found: METEOR skipped, tokenising with split_sentence"):
        scores = score_captions(REFERENCES, IDENTICAL)
    assert scores["METEOR"] is None
    assert scores["Bleu_4"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(CapstoneError, match="use_java=True"):
        score_captions(REFERENCES, IDENTICAL, use_java=True)


@pytest.mark.parametrize("use_java", [False, pytest.param(True, marks=needs_java)])
def test_unicode_and_empty_candidates_do_not_crash(use_java):
    references = {1: ["Un café à Zürich", "un café"], 2: ["東京 の 猫", "a cat"], 3: ["a dog", "the dog"]}
    candidates = {1: "un café à zürich", 2: "東京 の 猫", 3: "   "}
    scores = score_captions(references, candidates, use_java=use_java, meteor=False)
    # Two images match a reference exactly (7 words); the empty one adds no words but its
    # closest reference (2 words) still counts in the brevity penalty.
    assert scores["Bleu_1"] == pytest.approx(math.exp(1 - 9 / 7), rel=1e-6)
    assert 0.0 < scores["ROUGE_L"] < 1.0


def test_mismatched_image_ids_name_the_missing_ones():
    candidates = dict(IDENTICAL)
    del candidates["boat.jpg"]
    candidates["extra.jpg"] = "a caption"
    with pytest.raises(CapstoneError, match=r"no candidate for 1 id\(s\) \['boat.jpg'\].*\['extra.jpg'\]"):
        score_captions(REFERENCES, candidates, use_java=False)


@pytest.mark.parametrize(
    "references, candidates, message",
    [
        ({}, {}, "no images"),
        ({"a": "a dog"}, {"a": "a dog"}, r"references\['a'\]: expected a list"),
        ({"a": ["a dog"]}, {"a": ["a", "dog"]}, r"candidates\['a'\]: expected one caption string"),
        ({"a": ["", "  "]}, {"a": "a dog"}, r"references\['a'\]: has no non-empty"),
        ({"a": ["...", "!"]}, {"a": "a dog"}, r"empty after tokenising"),
    ],
)
def test_bad_inputs_raise_capstone_error(references, candidates, message):
    with pytest.raises(CapstoneError, match=message):
        score_captions(references, candidates, use_java=False)


def test_format_scores_is_one_line_in_metric_order():
    scores = {"Bleu_1": 0.71234, "Bleu_2": 0.5, "Bleu_3": 0.4, "Bleu_4": 0.25,
              "METEOR": None, "ROUGE_L": 0.5234, "CIDEr": 0.8121}
    line = format_scores(scores)
    assert line == ("Bleu_1 0.712  Bleu_2 0.500  Bleu_3 0.400  Bleu_4 0.250  "
                    "METEOR n/a  ROUGE_L 0.523  CIDEr 0.812")
    assert "\n" not in line
