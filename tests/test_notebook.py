"""The course notebook: committed clean, and it runs top to bottom offline on the shapes data."""

import ast
import json
import os
import pathlib
import shutil


REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "capstone" / "image_captioning.ipynb"
# The course's order; each appears in a markdown heading, in this order.
SECTIONS = ["Data", "Image embeddings", "Captions", "Vocabulary", "Captions as indices", "Batching", "The decoder",
            "Training", "Applying the model", "Your own images", "Grades"]


def load_notebook():
    with open(NOTEBOOK, encoding="utf-8") as f:
        return json.load(f)


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_committed_notebook_is_small_clean_and_in_the_course_order():
    nb = load_notebook()
    assert NOTEBOOK.stat().st_size < 40_000
    code_cells = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert code_cells and all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code_cells)
    for cell in code_cells:
        ast.parse(source(cell))  # plain Python, no shell magics
    headings = [line.lstrip("#").strip() for cell in nb["cells"] if cell["cell_type"] == "markdown"
                for line in source(cell).splitlines() if line.startswith("## ")]
    assert [h.split(". ", 1)[-1] for h in headings] == SECTIONS
    everything = "\n".join(source(cell) for cell in nb["cells"])
    # every graded part is graded, and the settings come from the environment
    for call in ("grade_vocabulary", "grade_indexing", "grade_batching", "grade_decoder_shapes",
                 "grade_random_init_loss", "grade_validation_loss", "grader.summary()"):
        assert call in everything, call
    for name in ("CAPSTONE_NOTEBOOK_QUICK", "CAPSTONE_NOTEBOOK_OUT", "CAPSTONE_COURSE_DATA"):
        assert name in everything
    assert "[[1, 2, 3], [4, 5]]                -> [[1, 2, 3], [4, 5, pad_idx]]" in everything
    assert "/work/" not in everything and "/tmp/" not in everything


def outputs_text(nb):
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                texts.append(output["text"])
            elif "data" in output and "text/plain" in output["data"]:
                texts.append(output["data"]["text/plain"])
    return "\n".join(texts)


def repo_files(folder):
    return {p.name for p in folder.iterdir() if p.name != "__pycache__"}


def test_notebook_runs_top_to_bottom_offline_in_quick_mode(tmp_path, monkeypatch):
    import nbclient  # requirements-dev.txt: a missing one fails here rather than skipping
    import nbformat
    work = tmp_path / "notebook"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    out = tmp_path / "out"
    monkeypatch.setenv("CAPSTONE_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("CAPSTONE_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("CAPSTONE_COURSE_DATA", str(tmp_path / "no-course-data"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    before = repo_files(REPO / "capstone"), (REPO / "runs" / "notebook").exists()

    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails

    text = outputs_text(nb)
    assert "the offline shapes dataset" in text  # it says why it does not use the course's files
    assert "train_img_embeds.shape = (300, 1280)" in text and "val_img_embeds.shape = (60, 1280)" in text
    assert "vocabulary: PASS" in text and "batching: PASS" in text and "validation loss: PASS" in text
    assert text.rstrip().splitlines()[-1] == "6/6 parts passed"
    captions = [line[len("caption: "):] for line in text.splitlines() if line.startswith("caption: ")]
    assert len(captions) == 4 and all(len(caption.split()) >= 2 for caption in captions), captions
    images = [o for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 6  # training example, loss curve, 3 validation pictures, your own picture
    # everything it wrote is under CAPSTONE_NOTEBOOK_OUT, nothing in the repository
    assert (out / "shapes-quick" / "history.json").exists() and (out / "my_shapes_picture.jpg").exists()
    assert (out / "data" / "shapes-quick" / "train_img_embeds.pickle").exists()
    assert (repo_files(REPO / "capstone"), (REPO / "runs" / "notebook").exists()) == before
    assert sorted(p.name for p in work.iterdir()) == [NOTEBOOK.name]
