"""One exception type for every mistake a learner can make with their inputs.

The CLI prints its message on one line and exits with status 2; library code
raises it instead of letting a confusing TensorFlow traceback escape.
"""


class CapstoneError(Exception):
    """Bad input: the message names the file/field and says what was expected."""
