"""What every checker shares: the verdict of a part, and how learner code is called.

A check returns (expected, received, message) when the learner's object is right, and raises
``Mismatch`` when it is wrong, or ``NotDone`` when the learner has not written it yet (the
blank still raises ``NotImplementedError``). ``call_learner`` turns any other exception in
learner code into a Mismatch that names the call, so a bug in a learner's function is a
verdict, never a crash of the grader.
"""

import copy
import dataclasses

import numpy as np

NOT_DONE = "not done yet"


@dataclasses.dataclass
class PartResult:
    """The verdict on one graded part."""
    part: str         # one of grader.PARTS
    passed: bool
    expected: object  # what the reference gives (the course's summary of it where it had one)
    received: object  # what the learner's code gave
    message: str      # one line: what was checked, or what went wrong and the likely mistake
    done: bool = True  # False while the learner's code still raises NotImplementedError

    @property
    def verdict(self):
        return "PASS" if self.passed else ("FAIL" if self.done else "TODO")

    def __str__(self):
        return f"{self.part}: {self.verdict}: {self.message}"


class Mismatch(Exception):
    """Raised inside a check when the learner's answer differs from the reference."""

    def __init__(self, expected, received, message):
        super().__init__(message)
        self.expected, self.received, self.message = expected, received, message


class NotDone(Exception):
    """Raised inside a check when the learner's code still raises NotImplementedError."""

    def __init__(self, name):
        super().__init__(f"{name}: {NOT_DONE} (it still raises NotImplementedError: write the code where it "
                         f"says ### YOUR CODE HERE ###)")
        self.name = name


def first_line(error):
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def call_learner(expected, name, fn, *args, **kwargs):
    """fn(*args, **kwargs) on deep copies of the data: the learner's code never touches the grader's own.

    NotImplementedError -> NotDone; any other exception -> Mismatch naming the call.
    """
    args = [_copy_data(arg) for arg in args]
    kwargs = {key: _copy_data(value) for key, value in kwargs.items()}
    return guarded(expected, name, fn, *args, **kwargs)


def _copy_data(value):
    """A deep copy of plain data (lists, dicts, arrays); models, decoders and generators as they are."""
    return copy.deepcopy(value) if isinstance(value, (list, tuple, dict, set, np.ndarray)) else value


def guarded(expected, name, fn, *args, **kwargs):
    """fn(*args, **kwargs) as they are (graph objects cannot be copied), with call_learner's verdicts."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise NotDone(name) from None
    except Exception as error:  # noqa: BLE001 - a bug in learner code is a verdict, not a crash
        raise Mismatch(expected, type(error).__name__,
                       f"{name} raised {type(error).__name__}: {first_line(error)}") from None


def short(value, width=32):
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."
