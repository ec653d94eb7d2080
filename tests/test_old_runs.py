"""A run directory written before the layout changed (tests/fixtures/run_v1, from 2026-11-22's main)
still loads, captions, evaluates and resumes. Its checkpoint index holds absolute paths of the
machine that trained it, as a run copied from another computer does."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from capstone.__main__ import main
from capstone.config import TrainingConfig
from capstone.final_model import FinalModel
from capstone.support import run_dir as runs
from capstone.training import train
from synthetic import make_problem
from utils import read_pickle

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
OLD_RUN = FIXTURES / "run_v1"
EXPECTED = json.loads((FIXTURES / "run_v1_expected.json").read_text())  # what the old code captioned


@pytest.fixture
def old_run(tmp_path):
    path = tmp_path / "run_v1"
    shutil.copytree(OLD_RUN, path)
    return path


def test_old_run_loads_and_captions_as_it_did(old_run):
    assert "/tmp/fx/run_v1" in (old_run / "best" / "checkpoint").read_text()  # paths from another machine
    model = FinalModel.load(str(old_run))
    embeds = np.asarray(read_pickle(str(FIXTURES / "run_v1_embeds.pickle")))
    assert model.captions(embeddings=embeds) == EXPECTED["greedy"]
    beams = [found[0] for found in model.beam_captions(embeddings=embeds, beam_size=3)]
    assert [text for text, _ in beams] == [text for text, _ in EXPECTED["beam3"]]
    np.testing.assert_allclose([s for _, s in beams], [s for _, s in EXPECTED["beam3"]], atol=1e-5)


def test_old_run_captions_from_the_command_line(old_run, capsys):
    assert main(["caption", str(old_run), "--embeds", str(FIXTURES / "run_v1_embeds.pickle"),
                 "--fns", str(FIXTURES / "run_v1_fns.pickle")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"img{i}.jpg\t{caption}" for i, caption in enumerate(EXPECTED["greedy"])]


def test_old_run_resumes_where_it_stopped(old_run):
    before = runs.read_history(str(old_run))
    assert [h["epoch"] for h in before] == [1, 2, 3, 4]
    (train_e, train_c, _), (val_e, val_c, _) = make_problem(n_train=120, n_val=30, embed_size=16, seed=3)
    config = TrainingConfig(batch_size=16, n_epochs=5, n_batches_per_epoch=60, n_validation_batches=2, min_count=1,
                            seed=7, learning_rate=0.01)
    history = train(str(old_run), train_e, train_c, val_e, val_c, training_config=config, progress=False,
                    log=lambda _: None)
    assert history[:4] == before and history[4]["epoch"] == 5
    # the old code resumed to 0.328 (its dropout masks came from another random stream): same ballpark
    assert history[4]["val_loss"] < before[3]["val_loss"] + 0.1
    assert runs.latest_checkpoint(str(old_run)).endswith("epoch-0005/model")  # continued in the new layout
