import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
FLICKR_DIR = REPO.parent / "shared" / "data" / "flickr8k-dev"


@pytest.fixture
def flickr_dir():
    """The shared Flickr8k development photos; tests using it skip when they are absent."""
    if not (FLICKR_DIR / "captions.csv").exists():
        pytest.skip("../shared/data/flickr8k-dev is absent")
    return FLICKR_DIR
