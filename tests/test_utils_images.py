"""utils.images and utils.pickle_io: decoding, cropping, preprocessing, pickles."""

import os
import pickle

import cv2
import numpy as np
import pytest

import utils
from capstone.errors import CapstoneError
from utils.images import _is_truncated_jpeg


def _encode(rgb_or_gray, ext):
    """Bytes of an image file; cv2 wants BGR(A), so colour images are converted first."""
    img = rgb_or_gray
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def _random_rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _smooth_rgb(height, width):
    """A gradient picture: JPEG keeps it within a few levels, unlike noise."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 255 // width, ys * 255 // height, np.full_like(xs, 90)], -1).astype(np.uint8)


def test_decode_png_returns_rgb_exactly():
    rgb = _random_rgb(20, 30)
    img = utils.decode_image_from_buf(_encode(rgb, ".png"))
    assert img.dtype == np.uint8 and img.shape == (20, 30, 3)
    np.testing.assert_array_equal(img, rgb)


def test_decode_jpeg_keeps_channel_order():
    rgb = _smooth_rgb(40, 60)
    img = utils.decode_image_from_buf(_encode(rgb, ".jpg"))
    assert img.shape == (40, 60, 3)
    # Blue is constant 90 and red grows to the right: a BGR mix-up would be far off.
    assert abs(float(img[..., 2].mean()) - 90) < 3
    assert np.abs(img.astype(int) - rgb.astype(int)).mean() < 3


def test_decode_png_with_alpha_drops_alpha():
    rgba = np.dstack([_random_rgb(10, 12), np.full((10, 12), 77, np.uint8)])
    img = utils.decode_image_from_buf(_encode(rgba, ".png"))
    assert img.shape == (10, 12, 3)
    np.testing.assert_array_equal(img, rgba[..., :3])


def test_decode_grayscale_gives_three_equal_channels():
    gray = np.arange(15 * 9, dtype=np.uint8).reshape(15, 9)
    img = utils.decode_image_from_buf(_encode(gray, ".png"))
    assert img.shape == (15, 9, 3)
    for channel in range(3):
        np.testing.assert_array_equal(img[..., channel], gray)


def test_decode_accepts_bytearray_and_uint8_array():
    buf = _encode(_random_rgb(5, 6), ".png")
    a = utils.decode_image_from_buf(bytearray(buf))
    b = utils.decode_image_from_buf(np.frombuffer(buf, np.uint8))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("buf, expected", [
    (b"", "empty file"),
    (b"hello, I am a text file\n", "not a decodable image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 50, "truncated JPEG"),
])
def test_decode_bad_bytes_raise_capstone_error(buf, expected):
    with pytest.raises(CapstoneError, match=f"photo.jpg: {expected}"):
        utils.decode_image_from_buf(buf, name="photo.jpg")


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9, 0.999])
def test_decode_truncated_jpeg_raises(fraction):
    buf = _encode(_smooth_rgb(120, 160), ".jpg")
    cut = buf[:int(len(buf) * fraction)]
    assert _is_truncated_jpeg(cut)
    with pytest.raises(CapstoneError, match="truncated JPEG"):
        utils.decode_image_from_buf(cut, name="x.jpg")


def test_jpeg_with_bytes_after_the_end_still_decodes():
    buf = _encode(_smooth_rgb(30, 40), ".jpg")
    assert not _is_truncated_jpeg(buf)
    img = utils.decode_image_from_buf(buf + b"\x00\x00 trailing junk")
    assert img.shape == (30, 40, 3)


@pytest.mark.parametrize("shape, expected_rows, expected_cols", [
    ((7, 4, 3), (2, 6), (0, 4)),    # portrait: diff 3, one more row cut at the top (course)
    ((4, 9, 3), (0, 4), (3, 7)),    # landscape: diff 5, one more column cut on the left
    ((6, 6, 3), (0, 6), (0, 6)),    # square: unchanged
    ((8, 4), (2, 6), (0, 4)),       # 2-D (grayscale) arrays work too
])
def test_image_center_crop(shape, expected_rows, expected_cols):
    img = np.arange(np.prod(shape)).reshape(shape)
    crop = utils.image_center_crop(img)
    side = min(shape[:2])
    assert crop.shape == (side, side) + shape[2:]
    (top, bottom), (left, right) = expected_rows, expected_cols
    np.testing.assert_array_equal(crop, img[top:bottom, left:right])


def test_crop_and_preprocess_crops_resizes_and_normalizes():
    img = _random_rgb(50, 80)
    seen = {}

    def preprocess(x):
        seen["dtype"], seen["shape"] = x.dtype, x.shape
        return x / 127.5 - 1

    out = utils.crop_and_preprocess(img, (32, 32), preprocess)
    assert seen == {"dtype": np.float32, "shape": (32, 32, 3)}
    assert out.dtype == np.float32 and out.shape == (32, 32, 3)
    expected = cv2.resize(img[:, 15:65], (32, 32)).astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out.min() >= -1 and out.max() <= 1


def test_crop_and_preprocess_takes_height_then_width():
    out = utils.crop_and_preprocess(_random_rgb(40, 40), (24, 36), lambda x: x)
    assert out.shape == (24, 36, 3)


@pytest.mark.parametrize("bad", [(224,), "224x224", (0, 224), None])
def test_crop_and_preprocess_rejects_bad_input_shape(bad):
    with pytest.raises(CapstoneError, match="input_shape"):
        utils.crop_and_preprocess(_random_rgb(10, 10), bad, lambda x: x)


def test_pickle_round_trip_matches_course_format(tmp_path):
    img_embeds = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    img_fns = ["b.jpg", "a.jpg", "ü.jpg", "c.jpg", "d.jpg"]
    utils.save_pickle(img_embeds, tmp_path / "train_img_embeds.pickle")
    utils.save_pickle(img_fns, str(tmp_path / "train_img_fns.pickle"))

    raw = (tmp_path / "train_img_embeds.pickle").read_bytes()
    assert raw == pickle.dumps(img_embeds, protocol=4)   # plain pickle, protocol 4
    assert raw[:2] == b"\x80\x04"
    loaded = utils.read_pickle(tmp_path / "train_img_embeds.pickle")
    assert loaded.dtype == np.float32 and loaded.shape == (5, 8)
    np.testing.assert_array_equal(loaded, img_embeds)
    # The course's own reader: pickle.load on the opened file.
    with open(tmp_path / "train_img_fns.pickle", "rb") as f:
        assert pickle.load(f) == img_fns
    assert sorted(os.listdir(tmp_path)) == ["train_img_embeds.pickle", "train_img_fns.pickle"]


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle me")


def test_failing_save_leaves_no_file(tmp_path):
    target = tmp_path / "img_fns.pickle"
    # Enough data before the failure that a non-atomic writer would leave bytes behind.
    with pytest.raises(RuntimeError, match="cannot pickle me"):
        utils.save_pickle(["x.jpg"] * 100000 + [_Unpicklable()], target)
    assert os.listdir(tmp_path) == []


def test_failing_save_keeps_the_old_file(tmp_path):
    target = tmp_path / "img_fns.pickle"
    utils.save_pickle(["old.jpg"], target)
    with pytest.raises(RuntimeError):
        utils.save_pickle(["new.jpg", _Unpicklable()], target)
    assert utils.read_pickle(target) == ["old.jpg"]
    assert os.listdir(tmp_path) == ["img_fns.pickle"]


def test_read_pickle_errors(tmp_path):
    with pytest.raises(CapstoneError, match="missing.pickle: no such file"):
        utils.read_pickle(tmp_path / "missing.pickle")
    good = pickle.dumps(list(range(1000)), protocol=4)
    (tmp_path / "cut.pickle").write_bytes(good[:len(good) // 2])
    with pytest.raises(CapstoneError, match="cut.pickle: not a readable pickle"):
        utils.read_pickle(tmp_path / "cut.pickle")
    (tmp_path / "text.pickle").write_text("not a pickle")
    with pytest.raises(CapstoneError, match="text.pickle: not a readable pickle"):
        utils.read_pickle(tmp_path / "text.pickle")
