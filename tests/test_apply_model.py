"""utils.apply_model on synthetic zips and folders with good and bad image files."""

import random
import threading
import time
import warnings
import zipfile

import cv2
import numpy as np
import pytest

import utils
from capstone.errors import CapstoneError

INPUT_SHAPE = (16, 16)


def _jpeg(height, width, seed):
    """JPEG bytes of a smooth picture that differs per seed."""
    ys, xs = np.mgrid[0:height, 0:width]
    bgr = np.stack([(xs * 7 + seed * 31) % 256, (ys * 5 + seed * 17) % 256,
                    np.full_like(xs, seed * 13 % 256)], -1).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", bgr)
    assert ok
    return buf.tobytes()


# name -> bytes; the good images have different shapes (portrait, landscape, square).
GOOD = {
    "b.jpg": _jpeg(40, 30, 1),
    "a.JPG": _jpeg(30, 50, 2),
    "c.jpg": _jpeg(24, 24, 3),
    "d.jpg": _jpeg(60, 20, 4),
}
BAD = {
    "truncated.jpg": _jpeg(40, 40, 5)[:300],
    "text.jpg": b"this is a text file, not a picture\n",
    "zero.jpg": b"",
}
IGNORED = {"notes.txt": b"not an image extension", "e.png": _jpeg(10, 10, 6)}


def _preprocess(x):
    return x / 127.5 - 1


def _toy_model(batch):
    """[B, H, W, 3] -> [B, 6]: per-channel mean and max, computed per image."""
    batch = np.asarray(batch)
    return np.concatenate([batch.mean(axis=(1, 2)), batch.max(axis=(1, 2))], axis=1)


def _expected_embedding(buf):
    img = utils.crop_and_preprocess(utils.decode_image_from_buf(buf), INPUT_SHAPE, _preprocess)
    return _toy_model(img[None])[0]


def _make_zip(path, files, folder="train2014/"):
    with zipfile.ZipFile(path, "w") as archive:
        if folder:
            archive.writestr(folder, b"")  # a directory entry, as real zips have
        for name, data in files.items():
            archive.writestr(folder + name, data)
    return path


def _make_folder(path, files):
    path.mkdir()
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def _check_good_result(img_embeds, img_fns, sources):
    assert img_fns == sorted(sources)
    assert img_embeds.dtype == np.float32 and img_embeds.shape == (len(sources), 6)
    for row, fn in zip(img_embeds, img_fns):
        np.testing.assert_allclose(row, _expected_embedding(sources[fn]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size, num_threads", [(32, None), (3, 1), (2, 3)])
def test_zip_skips_bad_files_and_reports_them(tmp_path, batch_size, num_threads):
    zip_fn = _make_zip(tmp_path / "images.zip", {**GOOD, **BAD, **IGNORED})
    with pytest.warns(UserWarning, match="skipped 3 of 7 image files") as record:
        img_embeds, img_fns = utils.apply_model(
            zip_fn, _toy_model, _preprocess, input_shape=INPUT_SHAPE,
            batch_size=batch_size, num_threads=num_threads, show_progress=False)
    # Course names: the member's file name without the folder; upper-case .JPG included.
    assert img_fns == ["a.JPG", "b.jpg", "c.jpg", "d.jpg"]
    _check_good_result(img_embeds, img_fns, GOOD)
    assert len(record) == 1
    message = str(record[0].message)
    for bad in ("train2014/truncated.jpg: truncated JPEG", "train2014/text.jpg: not a decodable",
                "train2014/zero.jpg: empty file"):
        assert bad in message


def test_folder_names_are_relative_paths(tmp_path):
    files = {**GOOD, "sub/e.jpg": _jpeg(33, 44, 7), **BAD, **IGNORED}
    folder = _make_folder(tmp_path / "images", files)
    with pytest.warns(UserWarning, match="skipped 3 of 8") as record:
        img_embeds, img_fns = utils.apply_model(
            str(folder), _toy_model, _preprocess, input_shape=INPUT_SHAPE, show_progress=False)
    good = {**GOOD, "sub/e.jpg": files["sub/e.jpg"]}
    assert img_fns == ["a.JPG", "b.jpg", "c.jpg", "d.jpg", "sub/e.jpg"]
    _check_good_result(img_embeds, img_fns, good)
    assert "zero.jpg: empty file" in str(record[0].message)


def test_order_is_sorted_whatever_finishes_first(tmp_path):
    sources = {f"img_{i:03d}.jpg": _jpeg(20 + i % 7, 25, i) for i in range(40)}
    zip_fn = _make_zip(tmp_path / "many.zip", dict(reversed(list(sources.items()))))
    jitter = random.Random(0)

    def slow_preprocess(x):
        time.sleep(jitter.random() * 0.004)  # workers finish out of order
        return _preprocess(x)

    img_embeds, img_fns = utils.apply_model(
        zip_fn, _toy_model, slow_preprocess, input_shape=INPUT_SHAPE,
        batch_size=5, num_threads=4, show_progress=False)
    _check_good_result(img_embeds, img_fns, sources)


def test_extensions_and_batches_of_one(tmp_path):
    zip_fn = _make_zip(tmp_path / "mixed.zip", {**GOOD, **IGNORED}, folder="")
    calls = []

    def model(batch):
        calls.append(batch.shape)
        return _toy_model(batch)

    img_embeds, img_fns = utils.apply_model(
        zip_fn, model, _preprocess, extensions=("png", ".JPG"), input_shape=INPUT_SHAPE,
        batch_size=1, show_progress=False)
    assert img_fns == ["a.JPG", "b.jpg", "c.jpg", "d.jpg", "e.png"]
    assert calls == [(1, 16, 16, 3)] * 5
    assert img_embeds.shape == (5, 6)


def test_macos_metadata_in_zip_is_ignored(tmp_path):
    zip_fn = tmp_path / "mac.zip"
    with zipfile.ZipFile(zip_fn, "w") as archive:
        archive.writestr("photos/c.jpg", GOOD["c.jpg"])
        archive.writestr("__MACOSX/photos/._c.jpg", b"\x00\x05\x16\x07 resource fork")
    _, img_fns = utils.apply_model(zip_fn, _toy_model, _preprocess, input_shape=INPUT_SHAPE,
                                   show_progress=False)
    assert img_fns == ["c.jpg"]


def test_keras_model(tmp_path):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, outputs)
    folder = _make_folder(tmp_path / "images", GOOD)
    img_embeds, img_fns = utils.apply_model(folder, model, _preprocess, input_shape=INPUT_SHAPE,
                                            batch_size=3, show_progress=False)
    assert img_fns == sorted(GOOD) and img_embeds.shape == (4, 4)
    one = utils.crop_and_preprocess(utils.decode_image_from_buf(GOOD["b.jpg"]),
                                    INPUT_SHAPE, _preprocess)
    np.testing.assert_allclose(img_embeds[1], model.predict(one[None], verbose=0)[0],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make_source, message", [
    (lambda tmp: tmp / "missing.zip", "missing.zip: no such zip archive or folder"),
    (lambda tmp: _make_zip(tmp / "empty.zip", {}), "empty.zip: no files ending in .jpg"),
    (lambda tmp: _make_zip(tmp / "txt.zip", IGNORED), "txt.zip: no files ending in .jpg"),
    (lambda tmp: _make_folder(tmp / "empty", {}), "empty: no files ending in .jpg"),
])
def test_nothing_to_embed_raises(tmp_path, make_source, message):
    with pytest.raises(CapstoneError, match=message):
        utils.apply_model(make_source(tmp_path), _toy_model, _preprocess, show_progress=False)


def test_only_bad_files_raises(tmp_path):
    zip_fn = _make_zip(tmp_path / "bad.zip", BAD)
    with pytest.raises(CapstoneError, match="bad.zip: none of the 3 image files could be decoded"), \
            pytest.warns(UserWarning, match="skipped 3 of 3"):
        utils.apply_model(zip_fn, _toy_model, _preprocess, show_progress=False)


def test_not_a_zip_raises(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"PK? no")
    with pytest.raises(CapstoneError, match="fake.zip: expected a zip archive or a folder"):
        utils.apply_model(tmp_path / "fake.zip", _toy_model, _preprocess, show_progress=False)


def test_same_file_name_in_two_zip_folders_raises(tmp_path):
    zip_fn = tmp_path / "dup.zip"
    with zipfile.ZipFile(zip_fn, "w") as archive:
        archive.writestr("train/x.jpg", GOOD["c.jpg"])
        archive.writestr("val/x.jpg", GOOD["b.jpg"])
    with pytest.raises(CapstoneError, match="two images are named 'x.jpg'"):
        utils.apply_model(zip_fn, _toy_model, _preprocess, show_progress=False)


def test_model_with_wrong_output_shape_raises(tmp_path):
    folder = _make_folder(tmp_path / "images", GOOD)
    with pytest.raises(CapstoneError, match=r"expected embeddings of shape \[4, D\]"):
        utils.apply_model(folder, lambda batch: batch, _preprocess, input_shape=INPUT_SHAPE,
                          show_progress=False)


def _decode_threads():
    return [t for t in threading.enumerate() if t.name.startswith("decode-")]


@pytest.mark.parametrize("fail_in", ["model", "preprocess"])
def test_errors_stop_the_worker_threads(tmp_path, fail_in):
    sources = {f"img_{i:03d}.jpg": _jpeg(20, 20, i) for i in range(60)}
    zip_fn = _make_zip(tmp_path / "many.zip", sources)
    calls = []

    def model(batch):
        calls.append(len(batch))
        if fail_in == "model" and len(calls) == 2:
            raise ValueError("model exploded")
        return _toy_model(batch)

    def preprocess(x):
        if fail_in == "preprocess" and x.mean() > 0 and len(calls) >= 1:
            raise ValueError("preprocess exploded")
        return _preprocess(x)

    start = time.monotonic()
    with pytest.raises(ValueError, match=f"{fail_in} exploded"):
        utils.apply_model(zip_fn, model, preprocess, input_shape=INPUT_SHAPE, batch_size=4,
                          num_threads=3, show_progress=False)
    assert time.monotonic() - start < 10
    assert _decode_threads() == []   # joined, not left waiting on a full pipeline


def test_embedding_size_must_not_change_between_batches(tmp_path):
    folder = _make_folder(tmp_path / "images", GOOD)
    sizes = iter([6, 5])

    def model(batch):
        return np.zeros((len(batch), next(sizes)))

    with pytest.raises(CapstoneError, match=r"expected embeddings of shape \[2, 6\]"):
        utils.apply_model(folder, model, _preprocess, input_shape=INPUT_SHAPE, batch_size=2,
                          show_progress=False)


@pytest.mark.parametrize("bad", [{"num_threads": 0}, {"batch_size": 0}, {"input_shape": (0, 5)}])
def test_bad_settings_raise(tmp_path, bad):
    folder = _make_folder(tmp_path / "images", GOOD)
    with pytest.raises(CapstoneError, match=next(iter(bad))):
        utils.apply_model(folder, _toy_model, _preprocess, show_progress=False, **bad)


def test_real_photos_folder(flickr_dir):
    folder = flickr_dir / "images"
    expected = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # real photos must not be reported as skipped
        img_embeds, img_fns = utils.apply_model(folder, _toy_model, _preprocess,
                                                input_shape=INPUT_SHAPE, show_progress=False)
    assert img_fns == expected and len(expected) > 200
    assert img_embeds.shape == (len(expected), 6)
    np.testing.assert_allclose(
        img_embeds[7], _expected_embedding((folder / img_fns[7]).read_bytes()), rtol=1e-5)
