"""The data the grading mutation tests run on: the shapes captions, and the Flickr8k-dev captions
(that half skips when ../shared/data/flickr8k-dev is absent)."""

import pytest

from capstone import captions as ref
from capstone.data.caption_files import load_captions
from capstone.grading import problem as grading_problem


@pytest.fixture(scope="module", params=["shapes", "flickr"])
def data(request):
    """(train captions, vocab) of one dataset."""
    if request.param == "shapes":
        (_, captions), _ = grading_problem.builtin_problem(n_train=200, n_val=1)
    else:
        request.getfixturevalue("flickr_dir")
        fn_to_captions = load_captions(str(request.getfixturevalue("flickr_dir") / "captions.csv"))
        captions = [fn_to_captions[fn] for fn in sorted(fn_to_captions)]
    return captions, ref.generate_vocabulary(captions, min_count=5)


@pytest.fixture(scope="module")
def flickr_dir():  # module scope, for the module-scoped data fixture; skips as conftest's does
    from tests.conftest import FLICKR_DIR

    if not (FLICKR_DIR / "captions.csv").exists():
        pytest.skip("../shared/data/flickr8k-dev is absent")
    return FLICKR_DIR
