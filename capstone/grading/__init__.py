"""The local grader: checks a learner's functions, decoder, trained model and sampler, part by part.

    grader.py           ``Grader``: one ``grade_*`` method per graded part, the summary table
    common.py           verdicts (PASS / FAIL / not done yet) and calling learner code on copies
    text_checks.py      vocabulary, caption indexing, batching
    decoder_checks.py   the decoder's shapes and variables; every tensor recomputed with numpy
    training_checks.py  generate_batch; the validation loss, computed; thresholds by data
    sampler.py          SamplerModel (the course's final_model), the sampler check on a fixed model
    peer_review.py      the best and worst captions by CIDEr, as a grid
    notebook.py         ``attempt``: the notebook goes on while a blank is blank
    reference.py        the package's own solution graded on a built-in problem
    make_student.py     the student notebook generated from the solution notebook (nbgrader)
    __main__.py         ``python -m capstone.grading [--run RUN_DIR]``

May import the course (``capstone.captions``, ``decoder``, ``training``, ...) and ``capstone.data``.
"""

from capstone.grading.grader import Grader

__all__ = ["Grader"]
