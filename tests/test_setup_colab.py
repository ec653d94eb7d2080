"""setup_colab with the loopback server as the mirror, a temporary HOME and working directory."""

import os

import pytest

import download_utils
import setup_colab
from capstone.errors import CapstoneError
from http_fixture import FileServer

WEIGHTS = download_utils.INCEPTION_V3_WEIGHTS
FILES = {f"/v0.1/{fn}": f"week 6 {fn}".encode() for fn in download_utils.WEEK_6_FILES}
FILES[f"/v0.2/{WEIGHTS}"] = b"\x89HDF inception weights"
QUIET = dict(retries=1, backoff_s=0.001, progress=False)


@pytest.fixture
def colab_like(tmp_path, monkeypatch):
    """A fresh machine: empty HOME, no KERAS_HOME, the notebook's folder as the working directory."""
    home, notebook_dir = tmp_path / "home", tmp_path / "course" / "capstone"
    home.mkdir()
    notebook_dir.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv(download_utils.MIRROR_ENV, raising=False)
    monkeypatch.chdir(notebook_dir)
    return tmp_path


def test_setup_week6_installs_downloads_links_and_is_idempotent(colab_like, monkeypatch):
    installs = []
    with FileServer(FILES) as server:
        monkeypatch.setenv(download_utils.MIRROR_ENV, server.url)
        paths = setup_colab.setup_week6(install=installs.append, **QUIET)
        assert sorted(server.paths_requested()) == sorted(FILES)
        setup_colab.setup_week6(install=installs.append, **QUIET)
        assert len(server.requests) == len(FILES)  # the second run downloaded nothing

    readonly = colab_like / "course" / "readonly"
    assert installs == [setup_colab.REQUIREMENTS_PATH] * 2
    assert os.path.basename(setup_colab.REQUIREMENTS_PATH) == "requirements.txt"
    assert len(paths) == 8
    for fn in download_utils.WEEK_6_FILES:
        assert (readonly / "week6" / fn).read_bytes() == f"week 6 {fn}".encode()
    keras_copy = colab_like / "home" / ".keras" / "models" / WEIGHTS
    assert keras_copy.is_symlink()
    assert keras_copy.read_bytes() == b"\x89HDF inception weights"
    assert os.path.samefile(keras_copy, readonly / "keras" / "models" / WEIGHTS)


def test_download_errors_reach_the_learner_as_capstone_errors(colab_like):
    with FileServer({}) as server:  # a mirror without the files: every request is a 404
        with pytest.raises(CapstoneError, match="captions_train-val2014.zip: HTTP 404"):
            setup_colab.setup_week6(install=None, base_url=server.url, **QUIET)
    assert not (colab_like / "course" / "readonly" / "week6" / "captions_train-val2014.zip").exists()


def test_pip_install_runs_pip_on_the_requirements(monkeypatch):
    commands = []

    class Finished:
        returncode = 0

    monkeypatch.setattr(setup_colab.subprocess, "run", lambda command: commands.append(command) or Finished)
    setup_colab.setup_common()
    assert commands == [[setup_colab.sys.executable, "-m", "pip", "install", "--quiet", "-r",
                         setup_colab.REQUIREMENTS_PATH]]
    Finished.returncode = 1
    with pytest.raises(CapstoneError, match="pip install failed with exit status 1"):
        setup_colab.setup_common()


def test_missing_requirements_file_is_a_clear_error(tmp_path):
    with pytest.raises(CapstoneError, match="requirements.txt: not found"):
        setup_colab.setup_common(install=None, requirements_path=str(tmp_path / "requirements.txt"))
