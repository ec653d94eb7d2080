"""``python -m capstone train`` and ``caption`` on the course's pickle + caption-file inputs."""

import csv
import os
import subprocess
import sys

import numpy as np

from capstone.__main__ import main
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
    assert "3 epochs" in capsys.readouterr().out
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


def test_module_entry_point_exit_code(tmp_path):
    result = subprocess.run([sys.executable, "-m", "capstone", "caption", str(tmp_path / "missing"), "--embeds", "e",
                             "--fns", "f"], capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: e: no such file")
    assert "Traceback" not in result.stderr
