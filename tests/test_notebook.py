"""The course notebooks: the solution (the source), the student notebook generated from it, and both run offline.

Three runs in quick mode share one output folder (the shapes data is drawn and embedded once):
the solution notebook passes every part; the student notebook as shipped runs top to bottom
with every part "not done yet"; the student notebook with the solutions filled in passes every part.
"""

import ast
import json
import os
import pathlib

import pytest

from capstone.grading import make_student
from capstone.grading.grader import PARTS

REPO = pathlib.Path(__file__).resolve().parents[1]
SOLUTION = REPO / "capstone" / "image_captioning_solution.ipynb"
STUDENT = REPO / "capstone" / "image_captioning.ipynb"
# The course's order; each appears in a markdown heading, in this order.
SECTIONS = ["Data", "Image embeddings", "Captions", "Vocabulary", "Captions as indices", "Batching", "The decoder",
            "Training", "Applying the model", "Your own images", "Peer review: what your model gets right and wrong",
            "Grades"]
# The learner's blanks: nbgrader grade_id -> what the cell defines.
BLANKS = {"generate_vocabulary": "def generate_vocabulary", "caption_tokens_to_indices": "def caption_tokens_to_indices",
          "batch_captions_to_matrix": "def batch_captions_to_matrix", "decoder": "class CaptionDecoder",
          "generate_batch": "def generate_batch", "one_step": "def one_step", "generate_caption": "def generate_caption"}
N = len(PARTS)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("path", [SOLUTION, STUDENT], ids=["solution", "student"])
def test_committed_notebooks_are_small_clean_and_in_the_course_order(path):
    nb = load(path)
    assert path.stat().st_size < 60_000
    code_cells = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert code_cells and all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code_cells)
    for cell in code_cells:
        ast.parse(source(cell))  # plain Python, no shell magics
    headings = [line.lstrip("#").strip() for cell in nb["cells"] if cell["cell_type"] == "markdown"
                for line in source(cell).splitlines() if line.startswith("## ")]
    assert [h.split(". ", 1)[-1] for h in headings] == SECTIONS
    everything = "\n".join(source(cell) for cell in nb["cells"])
    for call in ("grade_vocabulary", "grade_indexing", "grade_batching", "grade_decoder_shapes",
                 "grade_random_init_loss", "grade_generate_batch", "grade_validation_loss", "grade_sampler",
                 "grader.summary()"):
        assert call in everything, call
    for name in ("CAPSTONE_NOTEBOOK_QUICK", "CAPSTONE_NOTEBOOK_OUT", "CAPSTONE_COURSE_DATA"):
        assert name in everything
    assert "Output example: np.array([[1, 2, 3], [4, 5, pad_idx]]) if max_len=None" in everything  # the spec
    assert "/work/" not in everything and "/tmp/" not in everything


def test_student_notebook_is_generated_from_the_solution_and_up_to_date():
    assert STUDENT.read_text(encoding="utf-8") == make_student.render(), \
        "capstone/image_captioning.ipynb is out of date: run python -m capstone.grading.make_student"
    solution, student = load(SOLUTION), load(STUDENT)
    assert len(solution["cells"]) == len(student["cells"])
    blanks = {}
    for sol, stu in zip(solution["cells"], student["cells"]):
        grade_id = sol["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id:
            blanks[grade_id] = source(stu)
            assert "### BEGIN SOLUTION" in source(sol)
        else:
            assert source(sol) == source(stu)
    assert set(blanks) == set(BLANKS)
    for grade_id, text in blanks.items():
        assert BLANKS[grade_id] in text and "### YOUR CODE HERE ###\n" in text and "raise NotImplementedError()" in text
        assert "BEGIN SOLUTION" not in text and '"""' in text  # the docstring (the spec) stays
    assert blanks["decoder"].count("### YOUR CODE HERE ###") == 4  # h0/c0, word_embeds, logits..mask, loss


def test_requirements_notebook_names_the_dockerfiles_jupyter():
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements-notebook.txt").read_text().splitlines()]
    assert [line for line in lines if line] == ["jupyter>=1.1,<2"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert '"jupyter>=1.1,<2"' in dockerfile and "capstone/image_captioning.ipynb" in dockerfile


def filled_in(student_nb, solution_nb):
    """The student notebook with each blank cell replaced by the solution's (as a learner would fill it)."""
    for stu, sol in zip(student_nb.cells, solution_nb.cells):
        if "nbgrader" in sol.metadata:
            stu.source = "\n".join(line for line in sol.source.splitlines()
                                   if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
    return student_nb


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """Environment of the quick runs; the output folder is shared, so the shapes data is embedded once."""
    root = tmp_path_factory.mktemp("notebooks")
    saved = dict(os.environ)
    os.environ.update({
        "CAPSTONE_NOTEBOOK_QUICK": "1", "CAPSTONE_NOTEBOOK_OUT": str(root / "out"),
        "CAPSTONE_COURSE_DATA": str(root / "no-course-data"), "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    yield root
    os.environ.clear()
    os.environ.update(saved)


def execute(nb, root, name):
    import nbclient  # requirements-dev.txt: a missing one fails here rather than skipping

    work = root / name
    work.mkdir()
    # iopub_timeout: output printed at the end of a cell can reach the client after the cell's reply; nbclient
    # waits 4 s for it by default and then drops it without a word, which under load (a training job beside the
    # tests) lost a caption line. Wait longer, and fail loudly rather than lose output.
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", iopub_timeout=60,
                                     raise_on_iopub_timeout=True, resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    assert sorted(work.iterdir()) == []  # everything it wrote is under CAPSTONE_NOTEBOOK_OUT
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", output
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                texts.append(output["text"])
    return "\n".join(texts)


def read(path):
    import nbformat

    return nbformat.read(path, as_version=4)


def assert_every_part_passes(text, root, nb):
    assert "the offline shapes dataset" in text and "cannot be checked here" in text  # said once
    assert text.count("8,769") == 1
    assert "train_img_embeds.shape = (300, 1280)" in text and "val_img_embeds.shape = (60, 1280)" in text
    for part in PARTS:
        assert f"{part}: PASS" in text, part
    assert "computed by the grader on the fixed validation pairs" in text
    assert text.rstrip().splitlines()[-1] == f"{N}/{N} parts passed"
    captions = [line[len("caption: "):] for line in text.splitlines() if line.startswith("caption: ")]
    assert len(captions) == 4 and all(len(caption.split()) >= 2 for caption in captions), captions
    assert "peer review grid: 10 good and 10 wrong captions" in text
    assert (root / "out" / "peer_review.png").stat().st_size > 10_000
    images = [o for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 7  # training example, loss curve, 3 validation pictures, your own picture, the grid


@pytest.mark.slow  # ~30 s; the student notebook filled with these solutions runs in the default suite
def test_solution_notebook_runs_offline_and_passes_every_part(notebook_env):
    before = sorted(p.name for p in (REPO / "capstone").iterdir()), (REPO / "runs" / "notebook").exists()
    nb = read(SOLUTION)
    text = execute(nb, notebook_env, "solution")
    assert_every_part_passes(text, notebook_env, nb)
    assert (sorted(p.name for p in (REPO / "capstone").iterdir()), (REPO / "runs" / "notebook").exists()) == before


def test_student_notebook_as_shipped_runs_and_nothing_is_done_yet(notebook_env):
    text = execute(read(STUDENT), notebook_env, "student")
    for part in PARTS:
        assert f"{part}: TODO: " in text and "not done yet" in text, part
    assert "the decoder is not done yet: nothing to train" in text
    assert text.rstrip().splitlines()[-1] == f"0/{N} parts passed ({N} not done yet)"


def test_student_notebook_with_the_solutions_filled_in_passes_every_part(notebook_env):
    nb = filled_in(read(STUDENT), read(SOLUTION))
    assert "raise NotImplementedError()" not in "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    (notebook_env / "out" / "peer_review.png").unlink(missing_ok=True)
    text = execute(nb, notebook_env, "filled")
    assert_every_part_passes(text, notebook_env, nb)
