"""Flipped/cropped training views: embedded beside the photos, carried by split, used by train only."""

import json
import os
import pickle

import cv2
import numpy as np
import pytest

from capstone.__main__ import main
from capstone.encoders import views as views_module
from capstone.encoders.views import TrainingViews, central_crop, mirror, mirror_token_map, parse_views
from capstone.errors import CapstoneError
from capstone.training import FixedBatches, generate_batch, train
from synthetic import make_problem
from test_training import SMALL, quick_config


class Placeholders:  # what generate_batch reads of a decoder
    img_embeds, sentences, pad_idx = "img_embeds", "sentences", 0


def test_view_transforms_and_names():
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 20, 20, 3)).astype(np.float32)
    np.testing.assert_array_equal(mirror(pixels)[:, :, 0], pixels[:, :, -1])
    np.testing.assert_array_equal(mirror(mirror(pixels)), pixels)
    ramp = np.tile(np.arange(20, dtype=np.float32)[None, None, :, None], (1, 20, 1, 3))  # x coordinate
    zoomed = central_crop(ramp)
    assert zoomed.shape == ramp.shape
    # the central 16 of 20 columns stretched to 20: x 2..17 instead of 0..19, the middle kept
    assert 1.5 < zoomed[0, 10, 0, 0] < 2.5 and 16.5 < zoomed[0, 10, -1, 0] < 17.5
    assert abs(zoomed[0, 10, 10, 0] - ramp[0, 10, 10, 0]) < 1
    assert parse_views("flip, crop") == ("flip", "crop") and parse_views("") == ()
    with pytest.raises(CapstoneError, match="--augment: unknown view 'rotate'"):
        parse_views("flip,rotate")
    with pytest.raises(CapstoneError, match="names a view twice"):
        parse_views("flip,flip")


def test_batches_show_views_and_swap_sides_in_mirrored_captions():
    vocab = {"#PAD#": 0, "#START#": 1, "#END#": 2, "left": 3, "right": 4, "dog": 5}
    assert mirror_token_map(vocab).tolist() == [0, 1, 2, 4, 3, 5]
    embeds = np.zeros((10, 4), np.float32)  # photo i: all 0; its flip: i + 100; its crop: i + 200
    arrays = np.stack([np.full((10, 4), 100.0), np.full((10, 4), 200.0)], axis=1) + np.arange(10)[:, None, None]
    captions = [[[1, 3, 5, 4, 2]]] * 10  # "left dog right"
    views = TrainingViews(arrays.astype(np.float32), ("flip", "crop"), vocab)
    feed = generate_batch(Placeholders, embeds, captions, 300, rng=np.random.default_rng(1), views=views)
    shown, sentences = feed["img_embeds"][:, 0], feed["sentences"]
    kinds = np.where(shown == 0, 0, np.where(shown < 200, 1, 2))
    assert min(np.bincount(kinds, minlength=3)) > 70  # photo, flip, crop: about 100 each
    assert np.all(shown[kinds == 1] - 100 < 10)  # a view of the image drawn, not of another row
    np.testing.assert_array_equal(sentences[kinds == 1][:, 1:4], [[4, 5, 3]] * (kinds == 1).sum())  # sides swapped
    np.testing.assert_array_equal(sentences[kinds != 1][:, 1:4], [[3, 5, 4]] * (kinds != 1).sum())
    # Without views the same seed gives the batches it always gave (views draw after everything else).
    plain = generate_batch(Placeholders, embeds + np.arange(10)[:, None], captions, 300, rng=np.random.default_rng(1))
    with_views = generate_batch(Placeholders, embeds + np.arange(10)[:, None], captions, 300,
                                rng=np.random.default_rng(1), views=views)
    photo_rows = kinds == 0
    np.testing.assert_array_equal(plain["img_embeds"][photo_rows], with_views["img_embeds"][photo_rows])


def test_training_uses_views_validation_does_not_and_resume_is_exact(tmp_path, monkeypatch):
    (train_e, train_c, _), (val_e, val_c, _) = make_problem(n_train=120, n_val=30)
    noise = np.random.default_rng(3).normal(size=(120, 2, train_e.shape[1])).astype(np.float32)
    train_views = train_e[:, None] + 0.3 * noise
    shown = []
    original_show = TrainingViews.show
    monkeypatch.setattr(TrainingViews, "show", lambda self, *a: shown.append(1) or original_show(self, *a))
    val_batches = []
    original_iter = FixedBatches.__iter__
    monkeypatch.setattr(FixedBatches, "__iter__",
                        lambda self: (val_batches.append(b) or b for b in original_iter(self)))
    config = quick_config(n_epochs=2, n_batches_per_epoch=10, n_validation_batches=2)
    kwargs = dict(progress=False, log=lambda _: None, train_views=train_views, view_names=("flip", "crop"))
    whole = train(str(tmp_path / "whole"), train_e, train_c, val_e, val_c, SMALL, config, **kwargs)
    assert len(shown) == 20  # every training batch went through the views
    for batch in val_batches:  # validation rows are validation photos, never a view
        rows = list(batch.values())[0]  # img_embeds [batch, 32]
        assert all(np.isclose(val_e, row).all(axis=1).any() for row in rows)
    # Killed after epoch 1 and run again: the same numbers as the uninterrupted run.
    train(str(tmp_path / "resumed"), train_e, train_c, val_e, val_c, SMALL, quick_config(
        n_epochs=1, n_batches_per_epoch=10, n_validation_batches=2), **kwargs)
    resumed = train(str(tmp_path / "resumed"), train_e, train_c, val_e, val_c, None, config, **kwargs)
    np.testing.assert_allclose([h["val_loss"] for h in resumed], [h["val_loss"] for h in whole], rtol=1e-5)
    np.testing.assert_allclose([h["train_loss"] for h in resumed], [h["train_loss"] for h in whole], rtol=1e-5)
    with pytest.raises(CapstoneError, match=r"training views have shape \(120, 2, 32\), expected \(120, 1, 32\)"):
        train(str(tmp_path / "bad"), train_e, train_c, train_views=train_views, view_names=("flip",), progress=False)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Eight 224 x 224 PNG photos (lossless, so a mirrored copy on disk is exactly the mirrored pixels)."""
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    mirrored = tmp_path_factory.mktemp("mirrored")
    sources = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(), skimage.data.rocket()]
    for i in range(8):
        image = cv2.resize(sources[i % 4], (224, 224))[:, :: 1 if i < 4 else -1]
        cv2.imwrite(str(folder / f"p{i}.png"), image[:, :, ::-1])
        cv2.imwrite(str(mirrored / f"p{i}.png"), image[:, ::-1, ::-1])
    return folder, mirrored


def run_cli(*args):
    assert main([str(a) for a in args]) == 0


def test_embed_augment_split_and_train_read_the_meta(photo_folder, tmp_path, capsys):
    folder, mirrored = photo_folder
    prefix = tmp_path / "all"
    run_cli("embed", folder, "--augment", "flip,crop", "--spatial", "--out", prefix)
    meta = json.loads((tmp_path / "all_img_meta.json").read_text())
    # How they were made, in one file: Lite0's auto precision is float32 (bfloat16 measured no faster for it).
    assert meta == {"encoder": "efficientnet_lite0", "image_size": 224, "views": ["flip", "crop"],
                    "weights": "imagenet", "precision": "float32", "images": 8}
    assert not os.path.exists(f"{prefix}_embed.json")
    embeds = pickle.load(open(f"{prefix}_img_embeds.pickle", "rb"))
    pooled = np.load(f"{prefix}_img_views.npy")
    grids = np.load(f"{prefix}_img_view_features.npy")
    assert pooled.shape == (8, 2, 1280) and pooled.dtype == np.float32
    assert grids.shape == (8, 2, 7, 7, 1280) and grids.dtype == np.float16
    np.testing.assert_allclose(grids.astype(np.float32).mean(axis=(2, 3)), pooled, atol=0.01)
    assert np.abs(pooled[:, 1] - embeds).mean() > 0.05  # the crop is another embedding
    run_cli("embed", mirrored, "--out", tmp_path / "mirrored")  # the flip view = embedding the mirrored file
    np.testing.assert_allclose(pooled[:, 0], pickle.load(open(tmp_path / "mirrored_img_embeds.pickle", "rb")),
                               atol=2e-3)
    assert json.loads((tmp_path / "mirrored_img_meta.json").read_text())["views"] == []

    run_cli("split", prefix, "--val", 2, "--test", 2, "--seed", 0)
    train_fns = pickle.load(open(f"{prefix}_train_img_fns.pickle", "rb"))
    all_fns = pickle.load(open(f"{prefix}_img_fns.pickle", "rb"))
    rows = [all_fns.index(fn) for fn in train_fns]
    np.testing.assert_array_equal(np.load(f"{prefix}_train_img_views.npy"), pooled[rows])
    np.testing.assert_array_equal(np.load(f"{prefix}_train_img_view_features.npy"), grids[rows])
    part_meta = {part: json.loads((tmp_path / f"all_{part}_img_meta.json").read_text())
                 for part in ("train", "val", "test")}
    assert part_meta["train"] == {**meta, "images": 4}
    for part in ("val", "test"):  # views are training data only
        assert not os.path.exists(f"{prefix}_{part}_img_views.npy")
        assert part_meta[part] == {**meta, "views": [], "images": 2}

    captions = tmp_path / "captions.csv"
    captions.write_text("image,caption\n" + "".join(f"p{i}.png,a photo on the left number {i % 2}\n"
                                                    for i in range(8)))
    run = tmp_path / "run"
    run_cli("train", "--train-embeds", f"{prefix}_train_img_embeds.pickle", "--train-fns",
            f"{prefix}_train_img_fns.pickle", "--val-embeds", f"{prefix}_val_img_embeds.pickle", "--val-fns",
            f"{prefix}_val_img_fns.pickle", "--captions", captions, "--out", run, "--epochs", 1,
            "--batches-per-epoch", 2, "--min-count", 1, "--quiet")
    config = json.loads((run / "config.json").read_text())
    assert config["encoder"] == "efficientnet_lite0" and config["data"]["views"] == ["flip", "crop"]

    # A meta file naming Lite2 decides the encoder (both give 1280-d embeddings); a broken one is one error.
    (tmp_path / "all_train_img_meta.json").write_text(json.dumps({"encoder": "efficientnet_lite2", "views": []}))
    (tmp_path / "all_val_img_meta.json").write_text(json.dumps({"encoder": "efficientnet_lite2", "views": []}))
    run_cli("train", "--train-embeds", f"{prefix}_train_img_embeds.pickle", "--train-fns",
            f"{prefix}_train_img_fns.pickle", "--captions", captions, "--out", tmp_path / "run2", "--epochs", 1,
            "--batches-per-epoch", 2, "--min-count", 1, "--quiet")
    assert json.loads((tmp_path / "run2" / "config.json").read_text())["encoder"] == "efficientnet_lite2"
    capsys.readouterr()
    assert main(["train", "--train-embeds", f"{prefix}_train_img_embeds.pickle", "--train-fns",
                 f"{prefix}_train_img_fns.pickle", "--val-embeds", f"{prefix}_test_img_embeds.pickle", "--val-fns",
                 f"{prefix}_test_img_fns.pickle", "--captions", str(captions), "--out", str(tmp_path / "run3")]) == 2
    assert "all_train_img_meta.json says efficientnet_lite2 but" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--embeds", f"{prefix}_val_img_embeds.pickle", "--fns",
                 f"{prefix}_val_img_fns.pickle", "--captions", str(captions)]) == 2
    assert "come from efficientnet_lite2, but" in capsys.readouterr().err


def test_views_file_must_fit(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((3, 1, 4), np.float32))
    with pytest.raises(CapstoneError, match=r"v.npy: views of shape \(3, 1, 4\), expected \(3, 2, 4\)"):
        views_module.read_views(str(tmp_path / "v.npy"), 3, ["flip", "crop"], (4,))
    with pytest.raises(CapstoneError, match="missing, but the meta file beside it lists views"):
        views_module.read_views(str(tmp_path / "w.npy"), 3, ["flip"], (4,))
