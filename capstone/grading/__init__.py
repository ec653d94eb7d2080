"""The local grader: checks a learner's functions, decoder and trained model, part by part.

    grader.py     ``Grader``: one ``grade_*`` method per graded part of the course
    reference.py  the package's own solution graded on a built-in problem
    __main__.py   ``python -m capstone.grading [--run RUN_DIR]``

May import the course (``capstone.captions``, ``decoder``, ``training``, ...) and ``capstone.data``.
"""

from capstone.grading.grader import Grader

__all__ = ["Grader"]
