"""download_utils against a real HTTP server on 127.0.0.1 (tests/http_fixture.py)."""

import builtins
import errno
import hashlib
import os
import re

import pytest

import download_utils
from capstone.errors import CapstoneError
from http_fixture import FileServer

DATA = bytes(range(256)) * 200  # 51,200 bytes: several 64 KiB-or-less chunks' worth of resume points
SHA = hashlib.sha256(DATA).hexdigest()
FAST = dict(retries=2, backoff_s=0.001, timeout_s=10, progress=False)


@pytest.fixture
def server():
    with FileServer({"/v0.1/a.zip": DATA}) as running:
        yield running


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch):
    monkeypatch.delenv(download_utils.MIRROR_ENV, raising=False)


def test_download_saves_the_exact_bytes(server, tmp_path):
    target = tmp_path / "a.zip"
    result = download_utils.download_file(server.url + "/v0.1/a.zip", str(target), sha256=SHA, **FAST)
    assert result == str(target)
    assert target.read_bytes() == DATA
    assert not (tmp_path / "a.zip.part").exists()
    assert server.requests == [("/v0.1/a.zip", None)]


def test_cut_connection_is_resumed_with_range(server, tmp_path):
    server.cut_after = 3000
    target = tmp_path / "a.zip"
    download_utils.download_file(server.url + "/v0.1/a.zip", str(target), **FAST)
    assert server.ranges_requested() == [None, "bytes=3000-"]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == SHA


def test_server_without_range_support_restarts_from_zero(server, tmp_path):
    server.cut_after = 3000
    server.support_range = False
    target = tmp_path / "a.zip"
    download_utils.download_file(server.url + "/v0.1/a.zip", str(target), sha256=SHA, **FAST)
    # The second request asked for the rest, got a 200 with the whole file, and rewrote the .part.
    assert server.ranges_requested() == [None, "bytes=3000-"]
    assert target.read_bytes() == DATA
    assert not (tmp_path / "a.zip.part").exists()


def test_partial_file_is_kept_when_retries_run_out_and_resumed_later(server, tmp_path):
    server.cut_after = 5000
    target = tmp_path / "a.zip"
    with pytest.raises(CapstoneError, match="run again to resume"):
        download_utils.download_file(server.url + "/v0.1/a.zip", str(target), **dict(FAST, retries=0))
    assert not target.exists()
    assert (tmp_path / "a.zip.part").stat().st_size == 5000
    download_utils.download_file(server.url + "/v0.1/a.zip", str(target), sha256=SHA, **FAST)
    assert server.ranges_requested() == [None, "bytes=5000-"]
    assert target.read_bytes() == DATA


def test_complete_part_file_is_renamed_without_downloading_again(server, tmp_path):
    # An earlier run wrote every byte but stopped before renaming: the server answers 416.
    (tmp_path / "a.zip.part").write_bytes(DATA)
    download_utils.download_file(server.url + "/v0.1/a.zip", str(tmp_path / "a.zip"), sha256=SHA, **FAST)
    assert server.ranges_requested() == [f"bytes={len(DATA)}-"]
    assert os.listdir(tmp_path) == ["a.zip"]


def test_404_is_a_clear_error_and_leaves_no_file(server, tmp_path):
    server.status["/v0.1/a.zip"] = 404
    target = tmp_path / "a.zip"
    (tmp_path / "a.zip.part").write_bytes(b"stale bytes of an earlier try")
    with pytest.raises(CapstoneError, match=r"a\.zip: HTTP 404"):
        download_utils.download_file(server.url + "/v0.1/a.zip", str(target), **FAST)
    assert os.listdir(tmp_path) == []
    assert len(server.requests) == 1  # a missing file is not asked for again


def test_server_error_is_retried_with_exponential_backoff(server, tmp_path, monkeypatch):
    server.status["/v0.1/a.zip"] = 503
    waits = []
    monkeypatch.setattr(download_utils.time, "sleep", waits.append)
    with pytest.raises(CapstoneError, match="after 4 attempts .*HTTP 503"):
        download_utils.download_file(
            server.url + "/v0.1/a.zip", str(tmp_path / "a.zip"), retries=3, backoff_s=0.5, progress=False
        )
    assert waits == [0.5, 1.0, 2.0]
    assert len(server.requests) == 4
    assert not (tmp_path / "a.zip").exists()


def test_unreachable_server_is_retried_then_reported(tmp_path):
    with FileServer() as closed:
        url = closed.url + "/v0.1/a.zip"
    with pytest.raises(CapstoneError, match="after 3 attempts .*cannot reach the server"):
        download_utils.download_file(url, str(tmp_path / "a.zip"), **FAST)
    assert os.listdir(tmp_path) == []


def test_content_length_lie_is_retried_then_fails_without_a_final_file(server, tmp_path):
    server.extra_length = 100  # announces 51,300 bytes, sends 51,200 and closes
    target = tmp_path / "a.zip"
    with pytest.raises(CapstoneError, match=f"got {len(DATA)} of {len(DATA) + 100} bytes"):
        download_utils.download_file(server.url + "/v0.1/a.zip", str(target), **FAST)
    assert not target.exists()
    # Resume once; when it brings no byte the .part is dropped and the last try starts over.
    assert server.ranges_requested() == [None, f"bytes={len(DATA)}-", None]


def test_sha256_mismatch_restarts_from_zero_then_fails(server, tmp_path):
    target = tmp_path / "a.zip"
    with pytest.raises(CapstoneError, match="sha256"):
        download_utils.download_file(server.url + "/v0.1/a.zip", str(target), sha256="0" * 64, **FAST)
    assert os.listdir(tmp_path) == []
    assert server.ranges_requested() == [None, None, None]


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_instead_of_zip_is_rejected(server, tmp_path, content_type):
    server.files["/v0.1/a.zip"] = b"\n<!DOCTYPE html><html><body>Sign in to continue</body></html>"
    server.content_type = content_type
    with pytest.raises(CapstoneError, match="HTML page instead of a.zip"):
        download_utils.download_file(server.url + "/v0.1/a.zip", str(tmp_path / "a.zip"), **FAST)
    assert os.listdir(tmp_path) == []
    assert len(server.requests) == 1


def test_complete_file_is_not_fetched_again(server, tmp_path):
    target = tmp_path / "a.zip"
    download_utils.download_file(server.url + "/v0.1/a.zip", str(target), sha256=SHA, **FAST)
    assert len(server.requests) == 1
    download_utils.download_file(server.url + "/v0.1/a.zip", str(target), **FAST)
    download_utils.download_file(server.url + "/v0.1/a.zip", str(target), sha256=SHA, **FAST)
    assert len(server.requests) == 1
    target.write_bytes(b"a damaged copy")  # a wrong sha256 is fetched again
    download_utils.download_file(server.url + "/v0.1/a.zip", str(target), sha256=SHA, **FAST)
    assert len(server.requests) == 2
    assert target.read_bytes() == DATA


def test_mirror_from_environment_variable(server, tmp_path, monkeypatch):
    monkeypatch.setenv(download_utils.MIRROR_ENV, server.url + "/")
    path = download_utils.download_from_github("v0.1", "a.zip", str(tmp_path), **FAST)
    assert path == str(tmp_path / "a.zip")
    assert server.paths_requested() == ["/v0.1/a.zip"]
    assert (tmp_path / "a.zip").read_bytes() == DATA


def test_mirror_argument_wins_over_environment_variable(server, tmp_path, monkeypatch):
    monkeypatch.setenv(download_utils.MIRROR_ENV, str(tmp_path / "no-such-mirror"))
    download_utils.download_from_github("v0.1", "a.zip", str(tmp_path / "out"), base_url=server.url, **FAST)
    assert server.paths_requested() == ["/v0.1/a.zip"]
    assert (tmp_path / "out" / "a.zip").read_bytes() == DATA


def test_default_url_is_the_course_release():
    assert download_utils.release_url("v0.1", "val_img_fns.pickle") == (
        "https://github.com/hse-aml/intro-to-dl/releases/download/v0.1/val_img_fns.pickle"
    )


@pytest.mark.parametrize("as_file_url", [False, True])
def test_local_directory_mirror(tmp_path, as_file_url):
    mirror = tmp_path / "mirror"
    (mirror / "v0.1").mkdir(parents=True)
    (mirror / "v0.1" / "a.zip").write_bytes(DATA)
    base = mirror.as_uri() if as_file_url else str(mirror)
    out = str(tmp_path / "out")
    path = download_utils.download_from_github("v0.1", "a.zip", out, base_url=base, sha256=SHA, **FAST)
    assert open(path, "rb").read() == DATA
    with pytest.raises(CapstoneError, match="no such file"):
        download_utils.download_from_github("v0.1", "missing.zip", out, base_url=base, **FAST)
    assert sorted(os.listdir(tmp_path / "out")) == ["a.zip"]


def _patch_part_writes(monkeypatch, make_file):
    """Make download_utils' ``open`` of a ``.part`` for writing go through ``make_file``."""

    def patched_open(path, mode="r", *args, **kwargs):
        if str(path).endswith(".part") and ("w" in mode or "a" in mode):
            return make_file(path, mode)
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(download_utils, "open", patched_open, raising=False)


def test_permission_denied_names_the_directory(server, tmp_path, monkeypatch):
    target_dir = tmp_path / "readonly"
    target_dir.mkdir()
    if os.geteuid() == 0:  # root writes through chmod, so fake the refusal instead

        def refuse(path, mode):
            raise PermissionError(errno.EACCES, "Permission denied", path)

        _patch_part_writes(monkeypatch, refuse)
    else:
        target_dir.chmod(0o500)
    try:
        with pytest.raises(CapstoneError, match=re.escape(f"{target_dir}: permission denied")):
            download_utils.download_file(server.url + "/v0.1/a.zip", str(target_dir / "a.zip"), **FAST)
    finally:
        target_dir.chmod(0o700)
    assert os.listdir(target_dir) == []


def test_unwritable_directory_is_reported_before_any_request(server, tmp_path, monkeypatch):
    # What a non-root learner sees for a read-only directory, faked so it also runs as root.
    monkeypatch.setattr(download_utils.os, "access", lambda path, mode: False)
    with pytest.raises(CapstoneError, match=re.escape(f"{tmp_path}: permission denied")):
        download_utils.download_file(server.url + "/v0.1/a.zip", str(tmp_path / "a.zip"), **FAST)
    assert server.requests == []
    assert os.listdir(tmp_path) == []


class _FullDisk:
    """A writable file that raises ENOSPC once more than ``room`` bytes were written."""

    def __init__(self, path, mode, room):
        self._file = builtins.open(path, mode)
        self._room = room

    def write(self, data):
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._file.close()


def test_full_disk_is_a_clear_error_and_removes_the_part(server, tmp_path, monkeypatch):
    _patch_part_writes(monkeypatch, lambda path, mode: _FullDisk(path, mode, room=70_000 - 1))
    server.files["/v0.1/a.zip"] = DATA * 2  # 102,400 bytes: the second 64 KiB chunk does not fit
    with pytest.raises(CapstoneError, match="no space left on the disk"):
        download_utils.download_file(server.url + "/v0.1/a.zip", str(tmp_path / "a.zip"), **FAST)
    assert os.listdir(tmp_path) == []
    assert len(server.requests) == 1  # retrying cannot free space


def test_week_6_resources_come_from_release_v0_1(tmp_path):
    files = {f"/v0.1/{fn}": fn.encode() * 10 for fn in download_utils.WEEK_6_FILES}
    with FileServer(files) as server:
        paths = download_utils.download_week_6_resources(str(tmp_path / "week6"), base_url=server.url, **FAST)
    assert [os.path.basename(p) for p in paths] == [
        "captions_train-val2014.zip", "train2014_sample.zip", "train_img_embeds.pickle",
        "train_img_fns.pickle", "val2014_sample.zip", "val_img_embeds.pickle", "val_img_fns.pickle",
    ]
    assert server.paths_requested() == sorted(files)
    for path in paths:
        assert open(path, "rb").read() == os.path.basename(path).encode() * 10


@pytest.mark.parametrize("keras_home_set", [True, False])
def test_inception_weights_go_where_keras_looks(tmp_path, monkeypatch, keras_home_set):
    weights = "/v0.2/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    if keras_home_set:
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
        expected_dir = tmp_path / "kh" / "models"
    else:
        monkeypatch.delenv("KERAS_HOME", raising=False)
        expected_dir = tmp_path / "home" / ".keras" / "models"
    with FileServer({weights: b"\x89HDF weights"}) as server:
        paths = download_utils.download_all_keras_resources(base_url=server.url, **FAST)
    assert paths == [str(expected_dir / os.path.basename(weights))]
    assert (expected_dir / os.path.basename(weights)).read_bytes() == b"\x89HDF weights"
    assert server.paths_requested() == [weights]  # no data sets unless keras_datasets is given


def test_link_all_files_from_dir(tmp_path):
    src, dst = tmp_path / "readonly", tmp_path / "linked"
    src.mkdir()
    (src / "a.pickle").write_bytes(b"a")
    (src / "b.zip").write_bytes(b"b")
    dst.mkdir()
    (dst / "b.zip").write_bytes(b"learner's own copy")
    links = download_utils.link_all_files_from_dir(str(src), str(dst))
    assert links == [str(dst / "a.pickle"), str(dst / "b.zip")]
    assert os.readlink(dst / "a.pickle") == str(src / "a.pickle")
    assert (dst / "b.zip").read_bytes() == b"learner's own copy"
    download_utils.link_all_files_from_dir(str(src), str(dst))  # again: same result, no error
    assert (dst / "a.pickle").read_bytes() == b"a"
    with pytest.raises(CapstoneError, match="no such directory"):
        download_utils.link_all_files_from_dir(str(tmp_path / "absent"), str(dst))
