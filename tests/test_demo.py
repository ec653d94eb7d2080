"""The main job end to end, offline: ``demo --quick``, then caption and evaluate its run directory.

One quick demo (about 2 minutes on 2 cores) is shared by every test in this file.
"""

import json
import os
import zipfile

import pytest

from capstone.__main__ import main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo") / "run")
    assert main(["demo", "--quick", "--out", out]) == 0
    return out


def test_demo_writes_a_complete_run_directory_with_good_metrics(demo_run):
    for name in ("config.json", "vocab.json", "history.json", "loss.png", "examples.png", "metrics.json",
                 "data/train_img_embeds.pickle", "data/test_img_fns.pickle", "data/captions_shapes.zip"):
        assert os.path.getsize(os.path.join(demo_run, name)) > 0, name
    metrics = json.load(open(os.path.join(demo_run, "metrics.json")))
    assert metrics["test_images"] == 60
    greedy, beam, baseline = metrics["greedy"], metrics["beam3"], metrics["nearest_neighbour"]
    assert set(greedy) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "fully_true"}
    # the share of captions true of their picture, by number of shapes (shapes_facts)
    assert set(greedy["fully_true"]) <= {"1", "2", "3"} and all(0 <= r <= 1 for r in greedy["fully_true"].values())
    # the trained captioner describes the synthetic scenes well, and better than retrieval
    assert greedy["Bleu_1"] > 0.6 and greedy["CIDEr"] > 1.2
    assert greedy["CIDEr"] > baseline["CIDEr"]
    assert beam["CIDEr"] > baseline["CIDEr"]
    # both decoders side by side, on the same data (demo --decoder both, the default)
    for name in ("show_and_tell", "attention"):
        assert set(metrics[name]) == set(greedy) | {"beam3"} and metrics[name]["CIDEr"] > baseline["CIDEr"], name
        assert set(metrics[name]["fully_true"]) == set(greedy["fully_true"])
    assert metrics["show_and_tell"]["CIDEr"] == greedy["CIDEr"]  # the top-level entries stay the course decoder's
    attention_config = json.load(open(os.path.join(demo_run, "attention", "config.json")))
    assert attention_config["model"]["decoder"] == "attention"
    assert os.path.getsize(os.path.join(demo_run, "attention.png")) > 10_000
    assert os.path.getsize(os.path.join(demo_run, "data", "test_img_features.npy")) == 128 + 60 * 7 * 7 * 1280 * 2
    config = json.load(open(os.path.join(demo_run, "config.json")))
    assert config["encoder"] == "efficientnet_lite0" and config["model"]["img_embed_size"] == 1280
    assert config["data"] == {"source": "shapes", "captions": [os.path.join(demo_run, "data", "captions_shapes.zip")],
                              "images": 300}


@pytest.mark.slow  # re-scores the test split (three METEOR runs): ~1 minute
def test_demo_again_reuses_everything(demo_run, capsys):
    before = os.path.getmtime(os.path.join(demo_run, "data", "train_img_embeds.pickle"))
    assert main(["demo", "--quick", "--out", demo_run]) == 0
    out = capsys.readouterr().out
    assert "embedding shapes_train.zip" not in out  # pickles reused
    assert os.path.getmtime(os.path.join(demo_run, "data", "train_img_embeds.pickle")) == before


def test_caption_image_files_with_the_runs_encoder(demo_run, tmp_path, capsys):
    test_zip = os.path.join(demo_run, "data", "shapes_test.zip")
    with zipfile.ZipFile(test_zip) as zf:
        member = sorted(n for n in zf.namelist() if n.endswith(".jpg"))[0]
        image = tmp_path / os.path.basename(member)
        image.write_bytes(zf.read(member))
    assert main(["caption", demo_run, str(image)]) == 0
    out, err = capsys.readouterr()
    name, caption = out.strip().split("\t")
    assert name == str(image) and len(caption.split()) >= 2
    # a model of the demo's shapes says so, once, when it captions image files
    assert err.count("note:") == 1 and "was trained on 300 synthetic pictures of coloured shapes" in err
    # options before the image list, as well as after it
    second = tmp_path / "second.jpg"
    second.write_bytes(image.read_bytes())
    assert main(["caption", demo_run, "--beam", "3", str(image), str(second), "--max-len", "12"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.strip().split("\n")] == [str(image), str(second)]
    # the same picture through the pickled embeddings gives the same caption
    assert main(["caption", demo_run, "--embeds", os.path.join(demo_run, "data", "test_img_embeds.pickle"),
                 "--fns", os.path.join(demo_run, "data", "test_img_fns.pickle")]) == 0
    by_name = dict(line.split("\t") for line in capsys.readouterr().out.strip().split("\n"))
    assert by_name[os.path.basename(member)] == caption
    (tmp_path / "not_an_image.jpg").write_text("hello")
    assert main(["caption", demo_run, str(tmp_path / "not_an_image.jpg")]) == 2
    assert "not_an_image.jpg" in capsys.readouterr().err


@pytest.mark.slow  # ~30 s on 2 cores; the default run stays near 10 minutes
def test_evaluate_prints_metrics_json_last(demo_run, capsys):
    data = os.path.join(demo_run, "data")
    assert main(["evaluate", demo_run, "--embeds", f"{data}/test_img_embeds.pickle", "--fns",
                 f"{data}/test_img_fns.pickle", "--captions", f"{data}/captions_shapes.zip", "--beam", "2",
                 "--baseline", f"{data}/train"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    scores = json.loads(lines[-1])
    assert list(scores) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]
    assert scores["CIDEr"] > 1.0
    assert [line.split()[0] for line in lines[:2]] == ["beam2", "nearest_neighbour"]  # rows name the decoder
    saved_path = os.path.join(demo_run, "metrics_test_beam2.json")  # named after the split and the decoder
    assert lines[-2] == f"metrics and captions: {saved_path}"
    saved = json.load(open(saved_path))
    assert list(saved) == ["beam2", "nearest_neighbour"] and saved["beam2"]["scores"] == scores
    assert main(["evaluate", demo_run, "--embeds", f"{data}/test_img_embeds.pickle", "--fns",
                 f"{data}/test_img_fns.pickle", "--captions", f"{data}/captions_shapes.zip"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("greedy ")
    assert list(json.load(open(os.path.join(demo_run, "metrics_test_greedy.json")))) == ["greedy"]
    assert main(["evaluate", demo_run, "--embeds", f"{data}/test_img_embeds.pickle", "--fns",
                 f"{data}/test_img_fns.pickle", "--captions", f"{data}/captions_shapes.zip", "--beam", "-1"]) == 2
    assert "--beam must be a positive" in capsys.readouterr().err


def test_examples_figure_says_which_decoder_wrote_the_bold_captions():
    import numpy as np

    from capstone.evaluation.evaluate_run import examples_figure

    images = [np.zeros((8, 8, 3), np.uint8)] * 2
    fig = examples_figure(images, ["a red circle", "a blue square"], [["one red circle"], ["a square"]], "beam3")
    assert fig._suptitle.get_text() == (
        "bold: the model's caption (beam3);  grey: one of the human reference captions")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a red circle", "a blue square"]


def test_embed_command_and_its_bad_input(demo_run, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    with zipfile.ZipFile(os.path.join(demo_run, "data", "shapes_val.zip")) as zf:
        for member in sorted(zf.namelist())[:3]:
            (folder / os.path.basename(member)).write_bytes(zf.read(member))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    prefix = str(tmp_path / "small")
    assert main(["embed", str(folder), "--encoder", "efficientnet_lite0", "--out", prefix]) == 0
    from utils import read_pickle

    embeds, fns = read_pickle(prefix + "_img_embeds.pickle"), read_pickle(prefix + "_img_fns.pickle")
    assert embeds.shape == (3, 1280) and embeds.dtype == "float32" and "broken.jpg" not in fns
    capsys.readouterr()
    for argv, message in [
        (["embed", str(folder), "--encoder", "resnet", "--out", str(tmp_path / "x")], "unknown name 'resnet'"),
        (["embed", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")], "no such zip file or folder"),
    ]:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    empty_zip = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("readme.txt", "no images here")
    assert main(["embed", str(empty_zip), "--out", str(tmp_path / "x")]) == 2
    assert "no files ending in" in capsys.readouterr().err
    assert not any(p.name.startswith("x_") for p in tmp_path.iterdir())  # no partial outputs


def test_course_example_functions_caption_and_save_a_figure(demo_run, tmp_path):
    from capstone.evaluation.examples import apply_model_to_image_raw_bytes, show_valid_example
    from capstone.final_model import FinalModel
    from utils import read_pickle

    model = FinalModel.load(demo_run, with_encoder=True)
    data = os.path.join(demo_run, "data")
    fns = read_pickle(os.path.join(data, "val_img_fns.pickle"))
    out = tmp_path / "example.png"
    caption = show_valid_example(model, os.path.join(data, "shapes_val.zip"), fns, example_idx=2, out_png=str(out))
    assert len(caption.split()) >= 2
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with zipfile.ZipFile(os.path.join(data, "shapes_val.zip")) as zf:
        raw = zf.read(sorted(n for n in zf.namelist() if n.endswith(".jpg"))[2])
    assert apply_model_to_image_raw_bytes(model, raw, str(tmp_path / "again.png")) == caption


@pytest.mark.slow  # ~30 s; attention runs are also scored end to end by tests/test_photos_demo.py
def test_evaluate_and_caption_an_attention_run(demo_run, tmp_path, capsys):
    """The demo's attention decoder scored from its feature grids and from the images, with the baseline."""
    data = os.path.join(demo_run, "data")
    run = os.path.join(demo_run, "attention")
    common = ["--captions", os.path.join(data, "captions_shapes.zip"), "--baseline", os.path.join(data, "train")]
    assert main(["evaluate", run, "--embeds", os.path.join(data, "test_img_features.npy"),
                 "--fns", os.path.join(data, "test_img_fns.pickle"), *common]) == 0
    from_grids = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.load(open(os.path.join(run, "metrics_test_greedy.json")))
    assert set(saved) == {"greedy", "nearest_neighbour"} and "fully_true" in saved["greedy"]
    metrics = json.load(open(os.path.join(demo_run, "metrics.json")))
    assert from_grids["CIDEr"] == pytest.approx(metrics["attention"]["CIDEr"], abs=1e-6)  # the demo's own number
    assert saved["nearest_neighbour"]["scores"]["CIDEr"] == pytest.approx(metrics["nearest_neighbour"]["CIDEr"],
                                                                           abs=1e-6)
    assert main(["evaluate", run, "--images", os.path.join(data, "shapes_test.zip"), *common[:2]]) == 0
    from_images = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert from_images["CIDEr"] == pytest.approx(from_grids["CIDEr"], abs=0.05)  # the same images, embedded again
