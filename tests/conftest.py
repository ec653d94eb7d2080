import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# --precision auto is float32 in tests whatever the CPU (exact comparisons stay exact); the tests of
# bfloat16 ask for it (tests/test_precision.py, tests/test_precision_quality.py).
os.environ.setdefault("CAPSTONE_NO_BFLOAT16", "1")

REPO = pathlib.Path(__file__).resolve().parents[1]
FLICKR_DIR = REPO.parent / "shared" / "data" / "flickr8k-dev"


@pytest.fixture
def flickr_dir():
    """The shared Flickr8k development photos; tests using it skip when they are absent."""
    if not (FLICKR_DIR / "captions.csv").exists():
        pytest.skip("../shared/data/flickr8k-dev is absent")
    return FLICKR_DIR
