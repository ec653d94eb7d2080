"""demo --photos DIR --captions SRC: the demo's pipeline on a folder of captioned pictures (small here)."""

import json
import os

import cv2
import numpy as np
import pytest

from capstone.__main__ import main
from capstone.commands import photos
from capstone.config import ModelConfig, TrainingConfig
from serve_support import SCENES, scene_picture
from synthetic import scene_captions


@pytest.fixture
def captioned_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rows = ["image,caption"]
    for i in range(48):
        scene = SCENES[i % len(SCENES)]
        name = f"p{i:02d}.jpg"
        cv2.imwrite(str(folder / name), cv2.cvtColor(scene_picture(*scene, size=96, rng=np.random.default_rng(i)),
                                                      cv2.COLOR_RGB2BGR))
        rows += [f"{name},{caption}" for caption in scene_captions(*scene)]
    (tmp_path / "captions.csv").write_text("\n".join(rows) + "\n")
    return str(folder), str(tmp_path / "captions.csv")


def test_photos_demo_writes_a_run_directory_and_reuses_its_work(captioned_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(photos, "MODEL", ModelConfig(decoder="attention", lstm_units=32, word_embed_size=16,
                                                     img_embed_bottleneck=16, logit_bottleneck=16, attention_units=16))
    monkeypatch.setattr(photos, "TRAINING", TrainingConfig(n_epochs=2, n_batches_per_epoch=10, batch_size=16,
                                                           n_validation_batches=2, min_count=1))
    folder, captions = captioned_folder
    out = str(tmp_path / "run")
    assert main(["demo", "--photos", folder, "--captions", captions, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "seeded split (seed 0): 4 validation and 4 test photos" in printed
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["test_images"] == 4 and set(metrics) >= {"greedy", "beam3", "nearest_neighbour", "attention"}
    assert 0 <= metrics["greedy"]["CIDEr"] and set(metrics["beam3"]) == set(metrics["greedy"])
    assert json.loads(printed.strip().splitlines()[-1])["greedy"] == metrics["greedy"]
    assert metrics["beam_no_repeat_ngram"] == metrics["greedy_no_repeat_ngram"] == 2  # no word pair twice
    for example in metrics["examples"].values():
        for caption in (example["beam"], example["attention_greedy"]):
            words = caption.split()
            pairs = list(zip(words, words[1:]))
            assert len(pairs) == len(set(pairs)), caption
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["model"]["decoder"] == "attention" and config["data"]["images"] == 40
    for name in ("examples.png", "attention.png", "loss.png", "data/train_img_features.npy"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    before = os.path.getmtime(os.path.join(out, "data", "all_img_features.npy"))
    assert main(["demo", "--photos", folder, "--captions", captions, "--out", out]) == 0
    assert f"embedding {folder}" not in capsys.readouterr().out  # the grids and the split are reused
    assert os.path.getmtime(os.path.join(out, "data", "all_img_features.npy")) == before


def test_photos_without_captions_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--photos", str(tmp_path)]) == 2
    assert "give both --photos DIR and --captions SRC" in capsys.readouterr().err
