"""Keep TensorFlow's start-up chatter off a learner's terminal; keep what a person can act on.

What ``import tensorflow`` prints on a CPU machine, none of which a learner can do anything about:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 00:00:... cuda_platform.cc:52] failed call to cuInit: ... (later: oneDNN supports DT_INT32 only ...)
    WARNING:tensorflow:From .../saver.py:1068: remove_checkpoint (...) is deprecated ...

``TF_CPP_MIN_LOG_LEVEL`` (0 all, 1 no INFO, 2 no WARNING, 3 no ERROR) filters C++ messages, but
not the ones logged before TensorFlow reads it; ``quiet_tensorflow()`` imports TensorFlow with
those filtered by the same rule, and drops TensorFlow's notices about its *own* deprecated
internals. Python warnings and every other message still show. Set ``TF_CPP_MIN_LOG_LEVEL=0``
to see everything.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile

DEFAULT_LEVEL = "3"  # C++ INFO, WARNING and ERROR lines: none of them are actionable for a learner
# An absl/glog line: severity letter, MMDD, time, thread, file:line]
_CPP_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
_BEFORE_INIT_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def _min_level():
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def is_noise(line, min_level=None):
    """True for a C++ log line that TF_CPP_MIN_LOG_LEVEL asks to hide (and absl's notice about them).

    is_noise("I0000 00:00:17.6 9627 port.cc:153] oneDNN custom operations are on.", 2) -> True
    is_noise("error: e: no such file", 3) -> False
    """
    min_level = _min_level() if min_level is None else min_level
    if line.startswith(_BEFORE_INIT_NOTICE):
        return min_level >= 1
    match = _CPP_LOG_LINE.match(line)
    return bool(match) and _SEVERITY[match.group(1)] < min_level


@contextlib.contextmanager
def filtered_stderr(min_level=None, also_drop=None):
    """Everything written to file descriptor 2 inside the block (by Python, C++ or a child process)
    is held back, then written to ``sys.stderr`` without the lines ``is_noise`` names (nor those
    the compiled pattern ``also_drop`` matches).

    Only for short blocks without progress bars: the text appears when the block ends.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some notebook front ends): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", errors="replace")
            kept = "".join(line for line in text.splitlines(keepends=True)
                           if not is_noise(line, min_level) and not (also_drop and also_drop.match(line)))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


# "From /.../site-packages/tensorflow/python/training/saver.py:1068: remove_checkpoint (from ...) is deprecated"
_INTERNAL_DEPRECATION = re.compile(r"^From \S*[/\\](tensorflow|keras)[/\\]\S*:\d+: .* is deprecated", re.DOTALL)


class _NoInternalDeprecations(logging.Filter):
    """Drops TensorFlow's deprecation notices about calls made inside TensorFlow itself (a learner's
    own call of a deprecated function names the learner's file and still shows)."""

    def filter(self, record):
        return not _INTERNAL_DEPRECATION.match(record.getMessage())


def quiet_tensorflow():
    """Import TensorFlow without its start-up noise (once per process); returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LEVEL)
    tf_logger = logging.getLogger("tensorflow")  # the logger tf.get_logger() returns
    if not any(isinstance(f, _NoInternalDeprecations) for f in tf_logger.filters):
        tf_logger.addFilter(_NoInternalDeprecations())
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with filtered_stderr():
        import tensorflow
    return tensorflow
