"""Write files so that a crash never leaves a half-written one behind.

Everything is written to a temporary file in the target's directory and moved into place
with ``os.replace``, which is atomic on POSIX and Windows: readers see the old file or the
new one, never a mixture.
"""

import contextlib
import json
import os
import tempfile

# mkstemp makes files only their owner can read; a finished file should get the usual
# permissions (0666 minus the umask), like one written with open(). Read once: os.umask sets too.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path, mode="wb"):
    """``with atomic_open("x.json", "w") as f: ...`` -> x.json appears only if the block succeeds."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json(path, obj):
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def read_json_or_none(path):
    """The JSON in ``path``, or None when it is missing or unreadable (for files we repair)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_temporary(name):
    """Whether ``name`` is one of atomic_open's temporary files (".history.json.x1y2.tmp")."""
    return name.startswith(".") and name.endswith(".tmp")


def remove_stale_temporaries(directory):
    """Remove atomic_open's temporaries that a killed process left in ``directory``.

    Only for directories one process writes at a time (a run directory while it trains).
    """
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if is_temporary(name):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.remove(os.path.join(directory, name))
