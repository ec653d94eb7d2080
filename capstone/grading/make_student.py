"""Generate the student notebook from the solution notebook, as nbgrader's ``generate_assignment`` does.

    python -m capstone.grading.make_student           # writes capstone/image_captioning.ipynb
    python -m capstone.grading.make_student --check   # exit 1 when the committed one is out of date

The solution notebook (``capstone/image_captioning_solution.ipynb``) is the one source: each answer
sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` in a cell marked as an nbgrader
solution cell, hidden tests between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``.
nbgrader's own preprocessors (a dev dependency: requirements-dev.txt) replace each answer with
``### YOUR CODE HERE ###`` and ``raise NotImplementedError()``, drop hidden tests and clear outputs.
Never edit the student notebook by hand.
"""

import argparse
import os
import sys

NOTEBOOK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLUTION = os.path.join(NOTEBOOK_DIR, "image_captioning_solution.ipynb")
STUDENT = os.path.join(NOTEBOOK_DIR, "image_captioning.ipynb")
CODE_STUB = "### YOUR CODE HERE ###\nraise NotImplementedError()"


def render(solution_path=SOLUTION):
    """The student notebook's text (JSON) made from the solution notebook at ``solution_path``."""
    import nbformat
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions

    nb = nbformat.read(solution_path, as_version=4)
    resources = {}
    for preprocessor in (ClearSolutions(code_stub={"python": CODE_STUB}), ClearHiddenTests(), ClearOutput()):
        nb, resources = preprocessor.preprocess(nb, resources)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.execution_count = None
    return nbformat.writes(nb) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m capstone.grading.make_student",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the student notebook is up to date")
    args = parser.parse_args(argv)
    text = render()
    with open(STUDENT, encoding="utf-8") as f:
        current = f.read() if args.check else None
    if args.check:
        if current != text:
            print(f"{STUDENT} is out of date: run python -m capstone.grading.make_student", file=sys.stderr)
            return 1
        print(f"{STUDENT} is up to date")
        return 0
    with open(STUDENT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {STUDENT} from {SOLUTION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
