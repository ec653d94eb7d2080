"""``embed`` refuses files too large to read or decode before it reads or decodes them, and
skips any file a decoder fails on, naming it."""

import struct
import tracemalloc
import zipfile
import zlib

import cv2
import numpy as np
import pytest

import utils
from capstone.errors import CapstoneError
from utils.image_files import MAX_IMAGE_BYTES

INPUT_SHAPE = (16, 16)


def _jpeg(height, width, seed=0):
    rng = np.random.default_rng(seed)
    ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


def _png_header(width, height):
    """A PNG whose header claims width x height (with one row of its pixels: 33 + ~60 bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(1 + 3 * width))) + chunk(b"IEND", b""))


def _toy_model(batch):
    return np.asarray(batch).mean(axis=(1, 2))  # [B, 3]


def _embed(source, **limits):
    return utils.apply_model(str(source), _toy_model, lambda x: x, extensions=(".jpg", ".png"),
                             input_shape=INPUT_SHAPE, show_progress=False,
                             **limits)


def test_a_zip_entry_that_inflates_past_the_limit_is_skipped_unread(tmp_path):
    zip_fn = tmp_path / "images.zip"
    with zipfile.ZipFile(zip_fn, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("good.jpg", _jpeg(20, 20))
        archive.writestr("bomb.jpg", bytes(MAX_IMAGE_BYTES + 2 ** 20))  # 65 MiB of zeros, ~65 kB compressed
    assert zip_fn.stat().st_size < 2 ** 20
    utils.embedding.default_num_threads()  # its imports are not what is measured
    tracemalloc.start()
    try:
        with pytest.warns(UserWarning, match="skipped 1 of 2") as record:
            embeds, fns = _embed(zip_fn)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fns == ["good.jpg"] and embeds.shape == (1, 3)
    assert f"bomb.jpg: {MAX_IMAGE_BYTES + 2 ** 20:,} bytes, more than the limit" in str(record[0].message)
    assert peak < 16 * 2 ** 20, peak  # the 65 MiB entry was never read into memory


def test_a_large_file_in_a_folder_is_skipped_unread(tmp_path):
    (tmp_path / "small.jpg").write_bytes(_jpeg(20, 20))
    (tmp_path / "large.jpg").write_bytes(_jpeg(300, 300, seed=1))
    with pytest.warns(UserWarning, match="large.jpg: .* bytes, more than the limit of 5,000 bytes"):
        _, fns = _embed(tmp_path, max_image_bytes=5_000)
    assert fns == ["small.jpg"]


def test_a_picture_over_the_pixel_limit_is_skipped_undecoded(tmp_path, monkeypatch):
    decoded = []
    imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda data, flags: decoded.append(len(data)) or imdecode(data, flags))
    (tmp_path / "a.jpg").write_bytes(_jpeg(40, 40))
    (tmp_path / "b.jpg").write_bytes(_jpeg(100, 100, seed=2))
    (tmp_path / "c.png").write_bytes(_png_header(60_000, 60_000))  # 3.6 billion pixels, 0.3 kB
    (tmp_path / "d.png").write_bytes(_png_header(7_000, 7_000))    # 49 million
    with pytest.warns(UserWarning, match="skipped 3 of 4") as record:
        _, fns = _embed(tmp_path, max_pixels=5_000)
    message = str(record[0].message)
    assert fns == ["a.jpg"]
    assert "b.jpg: 100 x 100 is more than the limit of 5,000 pixels" in message
    assert "c.png: more than the limit" in message and "d.png: 7000 x 7000 is more than" in message
    assert len(decoded) == 1  # only a.jpg reached the decoder
    with pytest.raises(CapstoneError, match="d.png: 7000 x 7000 is more than the limit of 40,000,000 pixels"):
        utils.decode_image_from_buf(_png_header(7_000, 7_000), name="d.png")


def test_any_decoder_error_skips_the_file(tmp_path, monkeypatch):
    broken = _jpeg(30, 30, seed=3)
    imdecode = cv2.imdecode

    def failing(data, flags):
        if data.tobytes() == broken:
            raise cv2.error("OpenCV(4.x) error: (-215:Assertion failed) pixels <= CV_IO_MAX_IMAGE_PIXELS")
        return imdecode(data, flags)

    monkeypatch.setattr(cv2, "imdecode", failing)
    (tmp_path / "good.jpg").write_bytes(_jpeg(20, 20))
    (tmp_path / "broken.jpg").write_bytes(broken)
    with pytest.warns(UserWarning, match="broken.jpg: not decodable .*CV_IO_MAX_IMAGE_PIXELS"):
        _, fns = _embed(tmp_path)
    assert fns == ["good.jpg"]
