"""``python -m capstone train`` and ``caption`` on the course's pickle + caption-file inputs."""

import csv
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np

import pytest

from capstone.__main__ import main
from capstone.errors import CapstoneError
from capstone.support import run_dir as runs
from capstone.support.quiet import is_noise, quiet_tensorflow
from synthetic import make_problem, scene_captions
from utils import save_pickle

SMALL = ["--img-embed-bottleneck", "32", "--word-embed-size", "32", "--lstm-units", "64", "--logit-bottleneck", "32"]


def write_split(tmp_path, name, embeds, captions):
    fns = [f"{name}_{i:04d}.jpg" for i in range(len(embeds))]
    save_pickle(embeds, str(tmp_path / f"{name}_img_embeds.pickle"))
    save_pickle(fns, str(tmp_path / f"{name}_img_fns.pickle"))
    return fns, [(fn, c) for fn, caps in zip(fns, captions) for c in caps]


def test_train_then_caption_from_pickles_and_csv(tmp_path, capsys):
    (train_e, train_c, _), (val_e, val_c, val_scenes) = make_problem()
    _, train_rows = write_split(tmp_path, "train", train_e, train_c)
    val_fns, val_rows = write_split(tmp_path, "val", val_e, val_c)
    with open(tmp_path / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption")] + train_rows + val_rows)
    run = str(tmp_path / "run")
    p = str(tmp_path)
    assert main(["train", "--train-embeds", f"{p}/train_img_embeds.pickle", "--train-fns", f"{p}/train_img_fns.pickle",
                 "--val-embeds", f"{p}/val_img_embeds.pickle", "--val-fns", f"{p}/val_img_fns.pickle",
                 "--captions", f"{p}/captions.csv", "--out", run, "--epochs", "3", "--batches-per-epoch", "100",
                 "--batch-size", "32", "--min-count", "1", "--n-validation-batches", "5", "--quiet", *SMALL]) == 0
    summary = capsys.readouterr().out
    history = json.load(open(os.path.join(run, "history.json")))
    best = min(history, key=lambda h: h["val_loss"])
    assert "3 epochs" in summary
    assert f"best epoch {best['epoch']}, val loss {best['val_loss']:.3f} (kept in {run}/best/" in summary
    data = json.load(open(os.path.join(run, "config.json")))["data"]
    assert data == {"source": "captions", "captions": [os.path.abspath(f"{p}/captions.csv")], "images": len(train_e)}
    assert main(["caption", run, "--embeds", f"{p}/val_img_embeds.pickle", "--fns", f"{p}/val_img_fns.pickle"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert len(lines) == len(val_fns)
    pairs = [line.split("\t") for line in lines]
    assert [fn for fn, _ in pairs] == val_fns
    right = np.mean([cap in scene_captions(*scene) for (_, cap), scene in zip(pairs, val_scenes)])
    assert right >= 0.9
    assert main(["caption", run, "--embeds", f"{p}/val_img_embeds.pickle", "--fns", f"{p}/val_img_fns.pickle",
                 "--beam", "3", "--batch-size", "8"]) == 0
    beam_lines = capsys.readouterr().out.strip().split("\n")
    assert len(beam_lines) == len(val_fns) and all(line.split("\t")[1] for line in beam_lines)


def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    (train_e, train_c, _), _ = make_problem(n_train=20, n_val=2)
    write_split(tmp_path, "train", train_e, train_c)
    save_pickle([f"x{i}.jpg" for i in range(19)], str(tmp_path / "short_fns.pickle"))
    (tmp_path / "captions.csv").write_text("image,caption\ntrain_0000.jpg,a cat\n")
    p = str(tmp_path)
    code = main(["train", "--train-embeds", f"{p}/train_img_embeds.pickle", "--train-fns", f"{p}/short_fns.pickle",
                 "--captions", f"{p}/captions.csv", "--out", f"{p}/run"])
    err = capsys.readouterr().err
    assert code == 2 and "has 20 embeddings but" in err and "19 file names" in err
    code = main(["train", "--train-embeds", f"{p}/train_img_embeds.pickle", "--train-fns", f"{p}/train_img_fns.pickle",
                 "--captions", f"{p}/captions.csv", "--out", f"{p}/run"])
    assert code == 2 and "image 'train_0001.jpg' has no captions" in capsys.readouterr().err
    assert not os.path.exists(f"{p}/run")  # nothing written for a run that could not start
    code = main(["caption", f"{p}/no-run", "--embeds", f"{p}/train_img_embeds.pickle", "--fns", f"{p}/short_fns.pickle"])
    assert code == 2 and "error:" in capsys.readouterr().err


def test_module_entry_point_exit_code_and_no_start_up_noise(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}  # as a learner's shell
    result = subprocess.run([sys.executable, "-m", "capstone", "caption", str(tmp_path / "missing"), "--embeds", "e",
                             "--fns", "f"], capture_output=True, text=True, env=env,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 2
    # TensorFlow was imported (oneDNN, CUDA stub, absl notices), yet stderr is our one line
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: e: no such file"), result.stderr


def test_noise_filter_drops_what_tf_cpp_min_log_level_hides_and_keeps_the_rest():
    info = "I0000 00:00:1795433180.607692    9627 port.cc:153] oneDNN custom operations are on."
    error = "E0000 00:00:1795433196.245069    9627 util.cc:131] oneDNN supports DT_INT32 only on platforms with AVX."
    absl = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
    assert is_noise(info, 1) and is_noise(absl, 1) and not is_noise(error, 2) and is_noise(error, 3)
    assert not is_noise(info, 0) and not is_noise("error: x.jpg: not an image", 3)
    assert not is_noise("WARNING:tensorflow:something a person should read", 3)
    quiet_tensorflow()
    tf_logger, seen = logging.getLogger("tensorflow"), []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    tf_logger.addHandler(handler)
    try:
        tf_logger.warning("From /venv/lib/python3.11/site-packages/tensorflow/python/training/saver.py:1068: "
                          "remove_checkpoint (from tensorflow.python.checkpoint.checkpoint_management) is deprecated "
                          "and will be removed in a future version.\nInstructions for updating:\nUse file APIs.")
        tf_logger.warning("From /home/me/my_notebook.py:12: foo (from tensorflow.python.ops) is deprecated and will "
                          "be removed in a future version.")
        tf_logger.warning("a real warning")
    finally:
        tf_logger.removeHandler(handler)
    assert len(seen) == 2 and seen[0].startswith("From /home/me/my_notebook.py") and seen[1] == "a real warning"


def test_help_says_what_the_tool_does_and_lists_commands_in_a_newcomers_order(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "Command line:" not in text and "Show and Tell image captioning: a CNN embeds an image" in text
    listed = [line.split()[0] for line in text.split("commands, in the order you will use them:")[1].splitlines()
              if line.startswith("    ") and not line.startswith("      ")]
    assert listed == ["demo", "caption", "embed", "split", "train", "evaluate", "serve", "export"]


FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def test_a_run_records_its_training_data_and_old_runs_still_load(tmp_path, capsys):
    old = runs.load_run(os.path.join(FIXTURES, "run_v1"))  # made before config.json had "data"
    assert old.data is None and not runs.trained_on_shapes(old) and runs.shapes_warning(old) is None
    run = str(tmp_path / "run")
    shutil.copytree(os.path.join(FIXTURES, "run_v1"), run)
    runs.record_training_data(run, runs.SHAPES, ["data/captions_shapes.zip"], images=300)
    assert json.load(open(os.path.join(run, "config.json")))["data"] == {
        "source": "shapes", "captions": ["data/captions_shapes.zip"], "images": 300}
    assert runs.trained_on_shapes(run)
    assert runs.shapes_warning(run) == (
        f"note: {run} was trained on 300 synthetic pictures of coloured shapes (the demo); on other images it "
        f"still describes coloured shapes. For photos, train on captioned photos (README: 'Real photos').")
    # precomputed embeddings are not someone's photos: no note; options after the positionals work too
    assert main(["caption", run, "--embeds", os.path.join(FIXTURES, "run_v1_embeds.pickle"),
                 "--fns", os.path.join(FIXTURES, "run_v1_fns.pickle"), "--beam", "2"]) == 0
    out, err = capsys.readouterr()
    assert "note:" not in err and len(out.strip().splitlines()) > 0
    config = json.load(open(os.path.join(run, "config.json")))
    config["data"] = "shapes"
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(config, f)
    with pytest.raises(CapstoneError, match="config.json: 'data' must be an object"):
        runs.load_run(run)


def test_length_alpha_steers_beam_search_from_caption_and_evaluate(tmp_path, capsys):
    embeds = ["--embeds", os.path.join(FIXTURES, "run_v1_embeds.pickle"),
              "--fns", os.path.join(FIXTURES, "run_v1_fns.pickle")]
    run = os.path.join(FIXTURES, "run_v1")

    def words_per_caption(*flags):
        assert main(["caption", run, *embeds, "--beam", "3", *flags]) == 0
        captions = [line.split("\t")[1] for line in capsys.readouterr().out.strip().splitlines()]
        return captions, np.mean([len(c.split()) for c in captions])

    default, default_words = words_per_caption()
    expected = json.load(open(os.path.join(FIXTURES, "run_v1_expected.json")))["beam3"]
    assert default == [text for text, _ in expected]                     # alpha 1 is the default
    assert words_per_caption("--length-alpha", "1")[0] == default
    short, short_words = words_per_caption("--length-alpha", "0")
    long, long_words = words_per_caption("--length-alpha", "3")
    assert short_words < default_words < long_words                      # 0 favours short captions, 3 long ones

    captions = tmp_path / "captions.csv"
    captions.write_text("image,caption\n" + "".join(f"img{i}.jpg,a green triangle on the table\n" for i in range(6)))
    assert main(["evaluate", run, *embeds, "--captions", str(captions), "--beam", "3", "--length-alpha", "0.5",
                 "--out", str(tmp_path / "m.json")]) == 0
    saved = json.load(open(tmp_path / "m.json"))
    assert list(saved) == ["beam3_alpha0.5"] and saved["beam3_alpha0.5"]["length_alpha"] == 0.5
    assert capsys.readouterr().out.startswith("beam3_alpha0.5 ")

    for flags, message in [(["--length-alpha", "0.5"], "give --beam K as well"),
                           (["--beam", "2", "--length-alpha", "-1"],
                            "--length-alpha: length penalty alpha must be a number >= 0, got -1.0"),
                           (["--beam", "2", "--length-alpha", "nan"], "must be a number >= 0, got nan")]:
        assert main(["caption", run, *embeds, *flags]) == 2
        assert message in capsys.readouterr().err
        assert main(["evaluate", run, *embeds, "--captions", str(captions), *flags]) == 2
        assert message in capsys.readouterr().err
