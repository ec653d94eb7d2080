"""Prepare a Google Colab runtime (or any fresh machine) for the week-6 notebook.

The notebook's first cell does, as the course's ``setup_google_colab`` did::

    if "google.colab" in sys.modules:
        import setup_colab
        setup_colab.setup_week6()

``setup_common()`` installs this repository's ``requirements.txt`` with pip (today's
TensorFlow / Keras 3, not the course's Keras 2.0.6). ``setup_week6()`` also downloads the
week-6 data into ``../readonly/week6`` and the InceptionV3 weights into
``../readonly/keras/models``, then links them where Keras looks (``~/.keras/models``).
Running it again downloads nothing: complete files are kept and pip finds its
requirements satisfied. If pip replaced Colab's TensorFlow, restart the runtime once.

Set the ``CAPSTONE_MIRROR`` environment variable (or pass ``base_url=``) to use a
classroom mirror or a local directory instead of GitHub.
"""

import os
import subprocess
import sys

import download_utils
from capstone.errors import CapstoneError

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS_PATH = os.path.join(REPO_DIR, "requirements.txt")
READONLY_DIR = os.path.join("..", "readonly")  # relative to the notebook, as in the course


def running_on_colab():
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def pip_install(requirements_path):
    """Run ``python -m pip install -r requirements_path`` with this Python; CapstoneError if it fails."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "-r", requirements_path]
    result = subprocess.run(command)
    if result.returncode != 0:
        raise CapstoneError(f"{requirements_path}: pip install failed with exit status {result.returncode}")


def setup_common(install=pip_install, requirements_path=REQUIREMENTS_PATH):
    """Install the repository's requirements.

    install: called as ``install(requirements_path)``; None skips installing (tests, or a
        machine that is already set up).
    """
    if not os.path.isfile(requirements_path):
        raise CapstoneError(f"{requirements_path}: not found; run setup_colab from a clone of the repository")
    if install is not None:
        install(requirements_path)


def setup_week6(install=pip_install, readonly_dir=READONLY_DIR, base_url=None, **download_options):
    """Everything the week-6 notebook needs; returns the paths of the downloaded files.

    readonly_dir: where the data goes (``readonly_dir/week6``, ``readonly_dir/keras/models``).
    base_url, download_options: passed to ``download_utils`` (mirror, retries, progress, ...).
    """
    setup_common(install)
    paths = download_utils.download_week_6_resources(
        os.path.join(readonly_dir, "week6"), base_url=base_url, **download_options
    )
    keras_dir = os.path.join(readonly_dir, "keras")
    paths += download_utils.download_all_keras_resources(
        os.path.join(keras_dir, "models"), base_url=base_url, **download_options
    )
    download_utils.link_all_keras_resources(keras_dir)
    return paths
