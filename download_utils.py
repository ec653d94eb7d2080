"""Download the course's data files: resumable, checked, and never half-written.

The week-6 notebook needs seven files from the course's GitHub release (COCO captions,
sample images, pre-computed InceptionV3 image embeddings) and the InceptionV3 weights
that Keras loads. Entry points keep the course's names:

* ``download_file(url, file_path)`` -- one file, with retries, resume and checks;
* ``download_from_github(version, fn, target_dir)``, ``sequential_downloader(version, fns, target_dir)``;
* ``download_week_6_resources(save_path)``, ``download_all_keras_resources(keras_models, keras_datasets)``;
* ``link_all_files_from_dir(src_dir, dst_dir)``, ``link_all_keras_resources()``.

Mirrors. A release file is looked up at ``{base}/{version}/{fn}``; ``base`` is the
``base_url=`` argument, else the ``CAPSTONE_MIRROR`` environment variable, else the
course's GitHub releases. It may be an http(s) URL (a classroom mirror), a ``file://``
URL, or a plain directory laid out the same way (``mirror/v0.1/val_img_fns.pickle``).

How a download stays safe:

* bytes go to ``file_path + ".part"``; only a complete, checked file is renamed to
  ``file_path`` (``os.replace``), so a file at ``file_path`` is always whole and is never
  fetched again;
* after a network error the ``.part`` is kept and the next attempt asks for the rest
  (``Range: bytes=N-``); a server that answers 200 instead of 206 is read from zero;
* a size or sha256 mismatch, an HTML page where data was expected, an HTTP error such as
  404, or a full disk removes the ``.part``.

Only the standard library speaks HTTP (urllib), so a fresh machine needs nothing but tqdm.
"""

import errno
import hashlib
import http.client
import io
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request

from tqdm.auto import tqdm

from capstone.errors import CapstoneError

GITHUB_RELEASES = "https://github.com/hse-aml/intro-to-dl/releases/download"
MIRROR_ENV = "CAPSTONE_MIRROR"  # environment variable naming a mirror URL or directory

WEEK_6_VERSION = "v0.1"  # the course's release tag for the week-6 files
WEEK_6_FILES = (
    "captions_train-val2014.zip",
    "train2014_sample.zip",
    "train_img_embeds.pickle",
    "train_img_fns.pickle",
    "val2014_sample.zip",
    "val_img_embeds.pickle",
    "val_img_fns.pickle",
)
KERAS_VERSION = "v0.2"  # the course's release tag for Keras weights and data sets
INCEPTION_V3_WEIGHTS = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_DATASET_FILES = ("cifar-10-batches-py.tar.gz", "mnist.npz")

CHUNK_BYTES = 1 << 16  # read and hash 64 KiB at a time
RETRY_HTTP_CODES = (408, 429, 500, 502, 503, 504)  # the server may answer later
_HTML_START = re.compile(rb"^\s*<(!doctype html|html)", re.IGNORECASE)


class _TryAgain(Exception):
    """One failed attempt worth repeating; ``keep_part`` says whether the .part can be resumed."""

    def __init__(self, reason, keep_part):
        super().__init__(reason)
        self.keep_part = keep_part


class _Response:
    """An open source of bytes: ``stream`` starts at byte ``start`` of a file of ``total`` bytes.

    ``total`` is None when the server does not say; ``content_type`` is e.g. "text/html" or None.
    """

    def __init__(self, stream, start, total, content_type):
        self.stream = stream
        self.start = start
        self.total = total
        self.content_type = content_type


def download_file(url, file_path, sha256=None, retries=4, backoff_s=1.0, timeout_s=60, progress=True):
    """Download ``url`` to ``file_path`` unless a complete copy is already there.

    url: an http(s):// URL, a file:// URL or a plain local path.
    sha256: the expected hex digest, or None to trust the size the server announces.
    retries: attempts after the first; before attempt k (k >= 1) we wait
        ``backoff_s * 2 ** (k - 1)`` seconds (1 s, 2 s, 4 s, ... by default).
    progress: show a tqdm bar on stderr.
    Returns ``file_path``. Raises CapstoneError with a one-line reason when the file cannot
    be had; ``file_path`` then does not exist.
    """
    if os.path.exists(file_path) and (sha256 is None or _sha256_of(file_path) == sha256.lower()):
        return file_path  # only complete files are ever renamed to file_path
    _make_writable_dir(os.path.dirname(os.path.abspath(file_path)))
    part_path = file_path + ".part"
    failure = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            _fetch_into_part(url, file_path, part_path, timeout_s, progress)
            if sha256 is not None and _sha256_of(part_path) != sha256.lower():
                raise _TryAgain("sha256 of the downloaded bytes does not match", keep_part=False)
            _replace(part_path, file_path)
            return file_path
        except _TryAgain as error:
            failure = error
            if not error.keep_part:
                _remove(part_path)
        except CapstoneError:
            _remove(part_path)  # 404, HTML, full disk: a retry cannot help
            raise
    kept = f"; {part_path} is kept, run again to resume" if os.path.exists(part_path) else ""
    raise CapstoneError(f"{url}: download failed after {retries + 1} attempts ({failure}){kept}")


def _fetch_into_part(url, file_path, part_path, timeout_s, progress):
    """One attempt: append the missing bytes of ``url`` to ``part_path`` (or rewrite it from zero).

    Returns when the server's announced size is reached (or the stream ends when no size is
    announced). Raises _TryAgain for trouble a later attempt may not have, CapstoneError otherwise.
    """
    offset = os.path.getsize(part_path) if os.path.exists(part_path) else 0
    response = _open(url, offset, timeout_s)
    with response.stream:
        if response.start not in (0, offset):
            raise _TryAgain(f"asked for byte {offset} on, got byte {response.start} on", keep_part=False)
        if response.start != offset:
            offset = 0  # the server ignored our Range header: the body is the whole file
        if response.total is not None and offset == response.total:
            return  # the .part was already complete: an earlier run stopped just before renaming
        wants_html = file_path.lower().endswith((".html", ".htm"))
        if response.content_type == "text/html" and not wants_html:
            raise _html_error(url, file_path)
        received = offset
        try:
            with open(part_path, "ab" if offset else "wb") as part, tqdm(
                total=response.total, initial=offset, unit="B", unit_scale=True,
                unit_divisor=1024, desc=os.path.basename(file_path), disable=not progress,
            ) as bar:
                while True:
                    chunk = _read_chunk(response.stream, received)
                    if not chunk:
                        break
                    if received == 0 and not wants_html and _HTML_START.match(chunk):
                        raise _html_error(url, file_path)
                    part.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except OSError as error:  # reading errors became _TryAgain, so this is the disk
            raise _write_error(error, part_path) from None
    if response.total is None:
        return
    if received < response.total:
        # A resume that brought nothing means our .part and the server disagree: start over.
        keep = received > offset or offset == 0
        raise _TryAgain(f"got {received} of {response.total} bytes", keep_part=keep)
    if received > response.total:
        raise _TryAgain(f"got {received} bytes, the server announced {response.total}", keep_part=False)


def _read_chunk(stream, received):
    """The next bytes of ``stream`` (b"" at its end); a broken connection becomes _TryAgain."""
    try:
        return stream.read(CHUNK_BYTES)
    except (OSError, http.client.HTTPException) as error:
        raise _TryAgain(f"connection lost after {received} bytes: {error}", keep_part=True) from None


def _open(url, offset, timeout_s):
    """Start reading ``url`` at byte ``offset``: a _Response, or _TryAgain / CapstoneError."""
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme in ("http", "https"):
        return _open_http(url, offset, timeout_s)
    path = urllib.request.url2pathname(urllib.parse.urlparse(url).path) if scheme == "file" else url
    if not os.path.isfile(path):
        raise CapstoneError(f"{path}: no such file (looked for it in a local mirror directory)")
    total = os.path.getsize(path)
    start = offset if offset <= total else 0
    stream = open(path, "rb")
    stream.seek(start)
    return _Response(stream, start, total, content_type=None)


def _open_http(url, offset, timeout_s):
    """Send a GET (with ``Range: bytes=offset-`` when resuming) and read the answer's headers."""
    headers = {"User-Agent": "capstone-download-utils"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and _content_range(error.headers.get("Content-Range"))[1] == offset:
            return _Response(io.BytesIO(b""), offset, offset, content_type=None)
        if error.code == 416:
            raise _TryAgain(f"the server cannot resume at byte {offset}", keep_part=False) from None
        if error.code in RETRY_HTTP_CODES:
            raise _TryAgain(f"HTTP {error.code} {error.reason}", keep_part=True) from None
        raise CapstoneError(
            f"{url}: HTTP {error.code} {error.reason}; check the URL, "
            f"the {MIRROR_ENV} variable or the base_url argument"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise _TryAgain(f"cannot reach the server: {reason}", keep_part=True) from None
    content_type = response.headers.get_content_type() if response.headers.get("Content-Type") else None
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start is None:
            response.close()
            raise _TryAgain("the server answered 206 without a usable Content-Range", keep_part=False)
        if total is None and length is not None:
            total = start + length
        return _Response(response, start, total, content_type)
    return _Response(response, 0, length, content_type)


def _content_range(header):
    """(first byte, total size) from "bytes 100-199/200" or "bytes */200"; None where absent."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _html_error(url, file_path):
    return CapstoneError(
        f"{url}: the server sent an HTML page instead of {os.path.basename(file_path)}; "
        "the link may be wrong or need a login -- check the URL or the mirror"
    )


def _write_error(error, part_path):
    """A one-line CapstoneError for an OSError raised while writing ``part_path``."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return CapstoneError(f"{part_path}: no space left on the disk; free some space and run again")
    if isinstance(error, PermissionError) or error.errno == errno.EROFS:
        return CapstoneError(
            f"{os.path.dirname(os.path.abspath(part_path))}: permission denied, cannot write "
            "downloads there; choose another directory or fix its permissions"
        )
    return CapstoneError(f"{part_path}: cannot write ({error.strerror or error})")


def _make_writable_dir(directory):
    """Create ``directory`` if needed; CapstoneError when we may not write there."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise _write_error(error, os.path.join(directory, "?")) from None
    if not os.access(directory, os.W_OK):  # fail before any network request is made
        raise _write_error(PermissionError(errno.EACCES, "Permission denied"), os.path.join(directory, "?"))


def _replace(part_path, file_path):
    try:
        os.replace(part_path, file_path)
    except OSError as error:
        raise _write_error(error, file_path) from None


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def release_url(version, fn, base_url=None):
    """Where file ``fn`` of release ``version`` lives: a URL or a local path.

    ``release_url("v0.1", "val_img_fns.pickle")`` ->
    "https://github.com/hse-aml/intro-to-dl/releases/download/v0.1/val_img_fns.pickle",
    unless ``base_url`` or the CAPSTONE_MIRROR variable names a mirror.
    """
    base = base_url or os.environ.get(MIRROR_ENV) or GITHUB_RELEASES
    if re.match(r"^(https?|file)://", base, re.IGNORECASE):
        return f"{base.rstrip('/')}/{version}/{fn}"
    return os.path.join(os.path.expanduser(base), version, fn)


def download_from_github(version, fn, target_dir, base_url=None, **download_options):
    """Download release file ``fn`` into ``target_dir``; returns its path.

    ``download_options`` go to ``download_file`` (sha256, retries, backoff_s, progress, ...).
    """
    url = release_url(version, fn, base_url)
    return download_file(url, os.path.join(target_dir, fn), **download_options)


def sequential_downloader(version, fns, target_dir, base_url=None, **download_options):
    """Download each of ``fns`` from release ``version`` into ``target_dir``, one after another.

    Returns the list of local paths, in the order of ``fns``.
    """
    _make_writable_dir(target_dir)
    return [download_from_github(version, fn, target_dir, base_url, **download_options) for fn in fns]


def download_week_6_resources(save_path, base_url=None, **download_options):
    """The seven week-6 files (captions, sample images, image embeddings) into ``save_path``."""
    return sequential_downloader(WEEK_6_VERSION, WEEK_6_FILES, save_path, base_url, **download_options)


def keras_home():
    """Keras 3's own folder: $KERAS_HOME, else ~/.keras (/tmp/.keras when ~ is read-only)."""
    if os.environ.get("KERAS_HOME"):
        return os.environ["KERAS_HOME"]
    home = os.path.expanduser("~")
    return os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")


def download_all_keras_resources(keras_models=None, keras_datasets=None, base_url=None, **download_options):
    """InceptionV3 weights into ``keras_models`` (default: where Keras 3 looks, <keras_home>/models).

    ``keras_datasets``: when given, also CIFAR-10 and MNIST (other weeks of the course use
    them; week 6 does not). Returns the list of local paths.
    """
    keras_models = keras_models or os.path.join(keras_home(), "models")
    paths = sequential_downloader(
        KERAS_VERSION, [INCEPTION_V3_WEIGHTS], keras_models, base_url, **download_options
    )
    if keras_datasets:
        paths += sequential_downloader(
            KERAS_VERSION, KERAS_DATASET_FILES, keras_datasets, base_url, **download_options
        )
    return paths


def link_all_files_from_dir(src_dir, dst_dir):
    """Make every file of ``src_dir`` visible in ``dst_dir`` (symlinks; copies on Windows).

    A file the learner put in ``dst_dir`` themselves is left alone; an old link is renewed.
    Returns the list of paths in ``dst_dir``.
    """
    if not os.path.isdir(src_dir):
        raise CapstoneError(f"{src_dir}: no such directory to link files from")
    _make_writable_dir(dst_dir)
    linked = []
    for fn in sorted(os.listdir(src_dir)):
        src_file = os.path.abspath(os.path.join(src_dir, fn))
        dst_file = os.path.join(dst_dir, fn)
        if os.name == "nt":  # symlinks need admin rights on Windows
            if not os.path.exists(dst_file):
                shutil.copyfile(src_file, dst_file)
        else:
            if os.path.islink(dst_file):
                os.remove(dst_file)
            if not os.path.exists(dst_file):
                os.symlink(src_file, dst_file)
        linked.append(dst_file)
    return linked


def link_all_keras_resources(readonly_keras_dir=os.path.join("..", "readonly", "keras")):
    """Link the course's ``readonly/keras/{models,datasets}`` into Keras' own folder.

    The notebooks call this so that ``keras.applications.InceptionV3(weights="imagenet")``
    finds the weights without downloading them. Returns the list of linked paths.
    """
    models_dir = os.path.join(readonly_keras_dir, "models")
    if not os.path.isdir(models_dir):
        raise CapstoneError(
            f"{models_dir}: no such directory; run setup_colab.setup_week6() or "
            "download_utils.download_all_keras_resources() first"
        )
    linked = link_all_files_from_dir(models_dir, os.path.join(keras_home(), "models"))
    datasets_dir = os.path.join(readonly_keras_dir, "datasets")
    if os.path.isdir(datasets_dir):
        linked += link_all_files_from_dir(datasets_dir, os.path.join(keras_home(), "datasets"))
    return linked
