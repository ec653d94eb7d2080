"""The truth checker of shapes captions: the grammar's own captions are true, wrong ones are caught.

Fast (a few seconds): scenes come from ``make_example`` with tiny pictures, no model is trained.
"""

import collections
import zipfile

import numpy as np
import pytest

from capstone.data.shapes_captions import make_captions
from capstone.data.shapes_dataset import SPLITS, make_example, make_shapes_dataset
from capstone.data.shapes_facts import (
    Verdict, format_rates, fully_true_rates, judge_caption, load_scenes, scenes_of_sources,
)
from capstone.data.shapes_parse import parse_caption
from capstone.errors import CapstoneError


def shape(kind, colour, size, x, y):
    return {"kind": kind, "colour": colour, "size": size, "radius": 0.07 if size == "small" else 0.16,
            "x": x, "y": y, "angle": 0.0}


ONE = {"background": "striped", "shapes": [shape("circle", "red", "small", 0.15, 0.15)]}  # top left corner
PAIR = {"background": "plain", "shapes": [shape("circle", "red", "small", 0.2, 0.5),
                                          shape("square", "blue", "big", 0.7, 0.5)]}
TWINS = {"background": "noisy", "shapes": [shape("triangle", "green", "small", 0.5, 0.2),
                                           shape("triangle", "green", "small", 0.5, 0.8)]}
THREE = {"background": "shaded", "shapes": [shape("circle", "red", "small", 0.2, 0.2),
                                            shape("square", "blue", "big", 0.7, 0.5),
                                            shape("star", "orange", "small", 0.2, 0.8)]}


def test_every_caption_the_grammar_writes_is_judged_true():
    kinds, judged = collections.Counter(), 0
    for split in SPLITS:
        for index in range(110):  # 330 scenes
            _, captions, scene = make_example(0, split, index, image_size=32)
            groups = {(s["colour"], s["kind"]) for s in scene["shapes"]}
            kinds[len(scene["shapes"]), len(groups)] += 1
            # more draws of the same scene reach the grammar's rarer sentences too
            more = [c for draw in range(6) for c in make_captions(np.random.default_rng([draw, index]), scene)]
            for caption in captions + more:
                verdict = judge_caption(caption, scene)
                assert verdict == Verdict(True, ()), (caption, scene, verdict.problems)
                judged += 1
    # every kind of scene: one shape, a pair, twins, three apart, three with twins, triplets
    assert {(1, 1), (2, 2), (2, 1), (3, 3), (3, 2)} <= set(kinds), kinds
    assert judged > 10000


def test_the_parser_reads_the_facts():
    claims = parse_caption("A small red circle to the left of a big blue square, on a grey background.")
    circle, square = claims.mentions
    assert (circle.count, circle.colour, circle.kind, circle.size) == (1, "red", "circle", "small")
    assert (square.colour, square.kind, square.size) == ("blue", "square", "big")
    assert claims.relations == ((circle, "left", square),) and claims.background == "plain"
    claims = parse_caption("There are three shapes: two red circles and a blue star.")
    assert claims.total == 3 and [m.count for m in claims.mentions] == [2, 1]
    claims = parse_caption("two red shapes, a circle and a square")
    assert claims.total == 2 and [(m.colour, m.kind) for m in claims.mentions] == [("red", "circle"), ("red", "square")]


@pytest.mark.parametrize("scene, caption", [
    (ONE, "a small red circle in the top left corner"), (ONE, "there is a red circle on a striped background"),
    (ONE, "one red circle"), (PAIR, "a red circle left of a big blue square"),
    (PAIR, "a blue square to the right of a red circle on a grey background"),
    (TWINS, "a green triangle below another green triangle"), (TWINS, "two green triangles one above the other"),
    (THREE, "three shapes, a red circle, a blue square and an orange star"),
    (THREE, "there is a red circle above an orange star and a big blue square"),  # combined phrases
])
def test_true_captions(scene, caption):
    assert judge_caption(caption, scene) == Verdict(True, ())


@pytest.mark.parametrize("scene, caption, problem", [
    (ONE, "a blue circle", "says 'blue circle', the scene has no blue circle"),  # colour
    (PAIR, "a red circle left of a blue star", "says 'blue star', the scene has no blue star"),  # kind
    (ONE, "two red circles", "says two red circles, the scene has one"),  # count
    (TWINS, "a green triangle", "says one green triangle, the scene has two"),
    (THREE, "two shapes, a red circle, a blue square and an orange star", "says two shapes, the scene has three"),
    (ONE, "a big red circle", "says 'big red circle', the red circle is small"),  # size
    (PAIR, "two shapes, a red circle and a small blue square", "says 'small blue square', the blue square is big"),
    (PAIR, "a red circle right of a blue square", "says the red circle is right of the blue square; it is left of it"),
    (PAIR, "a blue square to the left of a red circle",
     "says the blue square is left of the red circle; it is right of it"),
    (THREE, "a red circle below an orange star and a blue square",
     "says the red circle is below the orange star; it is above it"),
    (THREE, "an orange star above a red circle and a blue square",
     "says the orange star is above the red circle; it is below it"),
    (TWINS, "two green triangles side by side",
     "says the green triangles are side by side; they are one above the other"),
    (ONE, "a red circle in the bottom right corner",
     "says the red circle is in the bottom right corner; it is in the top left corner"),  # region
    (ONE, "a red circle on the right", "says the red circle is on the right; it is in the top left corner"),
    (ONE, "a red circle on a noisy background", "says a noisy background, the background is striped"),
    (PAIR, "a red circle", "the blue square is not mentioned"),  # missing shapes
    (THREE, "a red circle left of a blue square", "the orange star is not mentioned"),
    (ONE, "a red circle and a blue square", "says 'blue square', the scene has no blue square"),  # extra shape
    (PAIR, "a red circle, a blue square and a red circle", "says two red circles, the scene has one"),
    (ONE, "", "the caption is empty"),  # no sentence at all
    (ONE, "the cat sat on the mat", "'the cat sat on the mat' does not follow the shapes grammar "
                                    "(stuck at word 1, 'the')"),
    (ONE, "a red circle left of", "'a red circle left of' does not follow the shapes grammar (it stops too early)"),
    (ONE, "a red red circle", "'a red red circle' does not follow the shapes grammar (stuck at word 3, 'red')"),
])
def test_false_captions_name_what_is_wrong(scene, caption, problem):
    verdict = judge_caption(caption, scene)
    assert not verdict.true and problem in verdict.problems, verdict.problems


def test_a_wrong_fact_is_reported_once_and_alone():
    assert judge_caption("a red circle above a blue square", PAIR).problems == (
        "says the red circle is above the blue square; it is left of it",)


def test_a_scene_that_is_not_one_is_a_clear_error():
    with pytest.raises(CapstoneError, match="not a shapes scene"):
        judge_caption("a red circle", {"shapes": [{"kind": "circle"}]})


def test_fully_true_rates_by_number_of_shapes():
    scenes = {"one.jpg": ONE, "pair.jpg": PAIR, "twins.jpg": TWINS, "three.jpg": THREE}
    captions = {"one.jpg": "a red circle", "pair.jpg": "a red circle", "twins.jpg": "a pair of green triangles",
                "three.jpg": "a red circle, a blue square and an orange star"}
    assert fully_true_rates(captions, scenes) == {"1": 1.0, "2": 0.5, "3": 1.0}
    assert fully_true_rates({"dir/one.jpg": "two red circles"}, scenes) == {"1": 0.0}  # matched by base name
    assert format_rates({"1": 1.0, "2": 0.5}) == "fully true: 1 shape 1.00  2 shapes 0.50"
    with pytest.raises(CapstoneError, match="'nowhere.jpg' has no scene"):
        fully_true_rates({"nowhere.jpg": "a red circle"}, scenes)


def test_scenes_load_from_the_captions_zip(tmp_path):
    dataset = make_shapes_dataset(tmp_path / "shapes", n_train=2, n_val=1, n_test=3, image_size=32, seed=5)
    scenes = load_scenes(dataset.captions_zip, "test")
    assert sorted(scenes) == [f"shapes_test_00000{i}.jpg" for i in range(3)]
    assert scenes["shapes_test_000002.jpg"] == make_example(5, "test", 2, image_size=32)[2]
    assert len(load_scenes(dataset.captions_zip)) == 6  # every split
    test_fns = sorted(scenes)
    assert scenes_of_sources([dataset.captions_source("test")], test_fns) is not None
    assert scenes_of_sources([dataset.captions_zip], ["elsewhere.jpg"]) is None  # not these images
    plain_zip = tmp_path / "captions_coco.zip"
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("annotations/captions_train.json", '{"images": [], "annotations": []}')
    assert scenes_of_sources([str(plain_zip), str(tmp_path / "captions.csv")], test_fns) is None
    with pytest.raises(CapstoneError, match="has no scenes_test.json"):
        load_scenes(str(plain_zip), "test")
    with pytest.raises(CapstoneError, match="cannot read it as a shapes captions zip"):
        load_scenes(str(tmp_path / "missing.zip"))


@pytest.mark.filterwarnings("ignore:use_java=False")
def test_evaluation_reports_fully_true_rates_for_shapes_data():
    from capstone.evaluation.evaluate_run import evaluate_baseline

    fns = ["one.jpg", "pair.jpg"]
    references = {"one.jpg": ["a red circle"], "pair.jpg": ["a red circle left of a blue square"]}
    train_embeds = np.eye(2, dtype=np.float32)
    report = evaluate_baseline(train_embeds, [references[fn] for fn in fns], train_embeds, fns, references, k=1,
                               use_java=False, scenes={"one.jpg": ONE, "pair.jpg": PAIR})
    assert report["fully_true"] == {"1": 1.0, "2": 1.0}
    assert "fully_true" not in evaluate_baseline(train_embeds, [references[fn] for fn in fns], train_embeds, fns,
                                                 references, k=1, use_java=False)
