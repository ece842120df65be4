"""A model says what it was trained on: one trained on the built-in synthetic drawings carries
that in its checkpoint, and its model card, run folder and slide outputs say it in words
(the service and its page: tests/serve; the reports: tests/reports)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from metastasis.checkpoint import SYNTHETIC_WARNING, load_checkpoint
from metastasis.data import synthetic
from metastasis.engine.trainer import RunResult
from metastasis.slides import analyse_slide


def test_synthetic_data_sets_are_marked_and_others_are_not(
    demo_data: Path, kaggle_data: Path, tmp_path: Path
) -> None:
    assert synthetic.is_synthetic(demo_data) and synthetic.is_synthetic(demo_data / "train")
    assert synthetic.is_synthetic(demo_data / "train" / "1")
    assert synthetic.is_synthetic(kaggle_data / "train_labels.csv")
    folder = synthetic.write_folder_dataset(tmp_path / "folder", 8)
    synthetic.write_pcam_h5(tmp_path / "pcam", "test", 4)
    assert synthetic.is_synthetic(folder) and synthetic.is_synthetic(tmp_path / "pcam")
    copied = tmp_path / "copied" / "train"  # the same pictures, not written by us: not marked
    shutil.copytree(demo_data / "train", copied)
    assert not synthetic.is_synthetic(copied)


def test_a_model_trained_on_drawings_carries_it_and_its_card_and_run_say_it(
    trained_run: RunResult,
) -> None:
    run = Path(trained_run.run_dir)
    bundle = load_checkpoint(run / "checkpoint.pt")
    assert bundle.synthetic and bundle.warning == SYNTHETIC_WARNING
    card = (run / "MODEL_CARD.md").read_text(encoding="utf-8")
    body = card.split("\n---\n", 1)[1]
    assert f"**Warning: {SYNTHETIC_WARNING}.**" in body.split("## Model details")[0]
    assert "synthetic-data" in card.split("\n---\n", 1)[0] and "- pcam" not in card
    data = json.loads((run / "data.json").read_text())
    assert data["train"]["synthetic"] is True and data["val"]["synthetic"] is True


def test_a_slide_analysed_with_such_a_model_says_it(trained_run: RunResult, tmp_path: Path) -> None:
    from tests.slides.conftest import mosaic, write_pyramid

    tissue = np.ones((2, 3), bool)
    path = write_pyramid(tmp_path / "s.tif", mosaic(2, 3, tissue, ~tissue), 0.972, levels=1)
    result = analyse_slide(path, Path(trained_run.run_dir), engine="torch", progress=False)
    summary = result.summary()
    assert summary["model_warning"] == SYNTHETIC_WARNING
    assert summary["notes"][0] == f"the model was {SYNTHETIC_WARNING}"


@pytest.mark.parametrize("synthetic_flag", [True, False])
def test_the_flag_survives_a_checkpoint_round_trip(synthetic_flag: bool, tmp_path: Path) -> None:
    from tests.slides.conftest import random_bundle

    from metastasis.checkpoint import save_checkpoint

    bundle = random_bundle()
    bundle.synthetic = synthetic_flag
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.pt", bundle))
    assert loaded.synthetic is synthetic_flag
    assert (loaded.warning is not None) is synthetic_flag


def test_the_run_evaluation_and_slides_reports_say_it_first(
    trained_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    from tests.slides.conftest import mosaic, write_pyramid

    from metastasis.inference.evaluate import evaluate_checkpoint
    from metastasis.slides import run_slides

    banner = f"<strong>Warning:</strong> the model was {SYNTHETIC_WARNING}."
    run_page = (Path(trained_run.run_dir) / "report.html").read_text(encoding="utf-8")
    assert run_page.index(banner) < run_page.index("<table")
    run = Path(trained_run.run_dir)
    evaluate_checkpoint(run, demo_data / "valid", tmp_path / "eval", gallery=0, progress=False)
    page = (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")
    assert banner in page and "Evaluated on the built-in synthetic drawings" in page
    tissue = np.ones((2, 2), bool)
    slide = write_pyramid(tmp_path / "s.tif", mosaic(2, 2, tissue, ~tissue), 0.972, levels=1)
    run_slides([slide], run, tmp_path / "slides", engine="torch", progress=False)
    assert banner in (tmp_path / "slides" / "report.html").read_text(encoding="utf-8")
