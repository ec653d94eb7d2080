"""A full disk or a folder we may not write to is one line that says what to do, not a traceback.

    with writing("runs/x/history.json", then="run the same command again"):
        write_json("runs/x/history.json", history)

turns ``OSError(ENOSPC)`` (or TensorFlow's error for the same thing) into
``CapstoneError("runs/x/history.json: out of disk space (No space left on device); free some
space, then run the same command again")``.
"""

import contextlib
import errno
import sys

from capstone.errors import CapstoneError

_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
# TensorFlow's C++ file system says these in its messages, without an errno.
_FULL_WORDS = ("no space left", "file too large", "quota exceeded", "resource exhausted")
_DENIED_WORDS = ("permission denied", "read-only file system", "operation not permitted")


def _first_line(error):
    text = str(getattr(error, "strerror", None) or getattr(error, "message", None) or error).strip()
    return (text.splitlines() or [type(error).__name__])[0][:200]


def disk_error(path, error, then="run the same command again"):
    """A CapstoneError naming ``path``, saying what went wrong with the disk and what to do."""
    reason = _first_line(error)
    code = getattr(error, "errno", None)
    lowered = str(error).lower()
    if code in _FULL or any(words in lowered for words in _FULL_WORDS):
        advice = f"out of disk space ({reason}); free some space, then {then}"
    elif code in _DENIED or any(words in lowered for words in _DENIED_WORDS):
        advice = f"permission denied ({reason}); make it writable or choose another directory, then {then}"
    else:
        advice = f"could not write it ({reason}); {then}"
    return CapstoneError(f"{path}: {advice}")


def is_disk_error(error):
    """OSError, or one of TensorFlow's errors (which is how its C++ file system reports the same)."""
    if isinstance(error, OSError):
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.OpError)


@contextlib.contextmanager
def writing(path, then="run the same command again"):
    """Turn a write failure inside the block into ``disk_error(path, ...)``."""
    try:
        yield
    except CapstoneError:
        raise
    except Exception as error:  # noqa: BLE001 - filtered right below
        if not is_disk_error(error):
            raise
        raise disk_error(path or getattr(error, "filename", None), error, then) from None
