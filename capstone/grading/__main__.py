"""``python -m capstone.grading``: grade the reference on a built-in problem, or a trained run.

    python -m capstone.grading               # grades the reference itself on a built-in problem
    python -m capstone.grading --run RUN_DIR  # grades a trained run's validation loss (history.json)
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from capstone.errors import CapstoneError  # noqa: E402
from capstone.grading.grader import (DEFAULT_VALIDATION_LOSS_THRESHOLD, VALIDATION_LOSS,  # noqa: E402
                                     VALIDATION_LOSS_THRESHOLDS, Grader)
from capstone.grading.reference import grade_reference  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m capstone.grading", description=__doc__.splitlines()[0])
    parser.add_argument("--run", metavar="RUN_DIR", help="grade this run's validation loss (its history.json)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_VALIDATION_LOSS_THRESHOLD,
                        help=f"validation loss to get below (default {DEFAULT_VALIDATION_LOSS_THRESHOLD}; "
                             f"course COCO data: {VALIDATION_LOSS_THRESHOLDS['coco']})")
    args = parser.parse_args(argv)
    try:
        if args.run:
            grader = Grader()
            grader.grade_run(args.run, args.threshold)
        else:
            grader = grade_reference(args.threshold)
    except CapstoneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    grader.summary()
    if args.run:
        return 0 if grader.results[VALIDATION_LOSS].passed else 1
    return 0 if grader.all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
