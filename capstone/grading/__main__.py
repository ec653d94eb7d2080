"""``python -m capstone.grading``: grade the reference on a built-in problem, or a trained run.

    python -m capstone.grading               # grades the reference itself on a built-in problem
    python -m capstone.grading --run RUN_DIR  # a trained run's best validation loss (history.json), against
                                              # the threshold of its data (shapes, flickr8k, coco)
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from capstone.errors import CapstoneError  # noqa: E402
from capstone.grading.grader import VALIDATION_LOSS, VALIDATION_LOSS_THRESHOLDS, Grader  # noqa: E402
from capstone.grading.reference import grade_reference  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m capstone.grading", description=__doc__.splitlines()[0])
    parser.add_argument("--run", metavar="RUN_DIR", help="grade this run's validation loss (its history.json)")
    thresholds = ", ".join(f"{data} {value}" for data, value in VALIDATION_LOSS_THRESHOLDS.items())
    parser.add_argument("--threshold", type=float, default=None,
                        help=f"validation loss to get below (default: by the data the run was trained on, "
                             f"config.json's 'data' or guessed from the vocabulary size: {thresholds})")
    args = parser.parse_args(argv)
    try:
        if args.run:
            grader = Grader()
            grader.grade_run(args.run, threshold=args.threshold)
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
