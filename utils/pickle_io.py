"""Save and load the course's pickles, e.g. ``train_img_embeds.pickle`` (float32 array
[N, D]) and ``train_img_fns.pickle`` (list of file names).

We write pickle protocol 4: the course used ``pickle.HIGHEST_PROTOCOL``, which was 4 on
the Python 3.6/3.7 it ran on, and protocol 4 is readable by every Python >= 3.4.
"""

import os
import pickle

from capstone.support.atomic import atomic_open
from capstone.errors import CapstoneError

PICKLE_PROTOCOL = 4


def save_pickle(obj, fn):
    """Write ``obj`` to the file ``fn`` without ever leaving a half-written file.

    The pickle goes to a temporary file in the same folder, which then replaces ``fn``
    in one step; if pickling fails, ``fn`` is untouched and the temporary file removed.
    """
    with atomic_open(fn, "wb") as f:
        pickle.dump(obj, f, protocol=PICKLE_PROTOCOL)


def read_pickle(fn):
    """The object stored in the pickle file ``fn`` (only open pickles you trust).

    Raises CapstoneError when the file is missing, truncated or not a pickle.
    """
    if not os.path.isfile(fn):
        raise CapstoneError(f"{fn}: no such file")
    try:
        with open(fn, "rb") as f:
            return pickle.load(f)
    except Exception as error:  # unpickling random bytes can fail in many ways
        raise CapstoneError(f"{fn}: not a readable pickle ({error})") from None
