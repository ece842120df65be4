"""`metastasis.train`: fit plus the run report, the call behind `metastasis train` and `tune`."""

import re
from pathlib import Path

import pandas as pd
import pytest

import metastasis
from metastasis.engine.trainer import RunResult
from metastasis.reports.run import FIGURES, write_run_report
from metastasis.training import fit, train


def test_the_public_api_has_train_and_fit() -> None:
    assert metastasis.train is train and metastasis.fit is fit


def test_train_adds_the_figures_and_the_page(trained_run: RunResult) -> None:
    run = trained_run.run_dir
    for name in FIGURES:
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (run / "report.html").read_text()
    assert all(re.search(rf'src="{re.escape(name)}"', page) for name in FIGURES)
    assert re.search(r"<th[^>]*>learning rate</th>", page)  # the history table, with the lr
    assert list(pd.read_csv(run / "history.csv")["lr"]) == [1e-3]


def test_a_report_needs_a_finished_fit(tmp_path: Path) -> None:
    bare = RunResult(tmp_path, {"val": {}}, 1, pd.DataFrame())
    with pytest.raises(ValueError, match="finished fit"):
        write_run_report(bare, metastasis.TrainConfig())
    assert list(tmp_path.iterdir()) == []
