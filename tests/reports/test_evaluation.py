"""Tests for metastasis.reports.evaluation: PNGs and HTML written into a folder; the pages
opened in a real browser (a hand-made one with hostile text, and a training run's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.browser import assert_sound, open_report

from metastasis.engine.trainer import RunResult
from metastasis.metrics.bootstrap import bootstrap_ci
from metastasis.metrics.calibration import brier_score, expected_calibration_error
from metastasis.metrics.classification import binary_metrics
from metastasis.reports.evaluation import write_evaluation, write_html_report

Y = [0, 0, 1, 1]
P = [0.1, 0.4, 0.35, 0.8]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROC_AUC = '<th scope="row" title="roc_auc"><span class="word">ROC-AUC</span></th>'


def test_write_evaluation(tmp_path: Path) -> None:
    metrics = write_evaluation(tmp_path, Y, P, threshold=0.5, prefix="test_")
    assert {k: v for k, v in metrics.items() if k not in ("ece", "ci95")} == binary_metrics(Y, P)
    assert metrics["ece"] == expected_calibration_error(Y, P)
    assert metrics["brier"] == pytest.approx(brier_score(Y, P))
    assert metrics["ci95"] == bootstrap_ci(Y, P, threshold=0.5, n_resamples=1000, seed=0)
    assert set(metrics["ci95"]) == {"roc_auc", "accuracy", "sensitivity", "specificity"}
    json.dumps(metrics, allow_nan=False)  # plain JSON, no NaN
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "test_confusion_matrix.png",
        "test_pr.png",
        "test_reliability.png",
        "test_roc.png",
    ]
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 100


def test_write_evaluation_options(tmp_path: Path) -> None:
    metrics = write_evaluation(tmp_path, Y, P, 0.4, n_bins=5, n_resamples=0)
    assert "ci95" not in metrics and metrics["threshold"] == 0.4
    assert metrics["ece"] == expected_calibration_error(Y, P, n_bins=5)
    seeded = write_evaluation(tmp_path, Y, P, n_resamples=50, seed=3)["ci95"]
    assert seeded == bootstrap_ci(Y, P, n_resamples=50, seed=3)


def test_write_evaluation_single_class(tmp_path: Path) -> None:
    metrics = write_evaluation(tmp_path, [0, 0, 0], [0.1, 0.6, 0.3])
    assert metrics["roc_auc"] is None
    assert metrics["ci95"]["roc_auc"] == {"low": None, "high": None, "n_skipped": 1000}
    assert metrics["ece"] == pytest.approx((0.1 + 0.6 + 0.3) / 3)
    json.dumps(metrics, allow_nan=False)
    assert len(list(tmp_path.iterdir())) == 4


def test_write_evaluation_validates_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        write_evaluation(tmp_path, [0, 1], [0.5])
    assert list(tmp_path.iterdir()) == []


def test_write_html_report(tmp_path: Path) -> None:
    metrics = binary_metrics(Y, P) | {"per_class": {"x": 1}, "model": "<cnn>"}
    table = pd.DataFrame({"split": ["val"], "roc_auc": [0.912345]})
    path = write_html_report(
        tmp_path / "report.html",
        "Run <1>",
        metrics,
        ["roc.png", "pr.png", "confusion_matrix.png"],
        extra_tables={"Per split": table},
        notes=["threshold chosen on validation & fixed"],
    )
    assert path == tmp_path / "report.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<h1>Run &lt;1&gt;</h1>" in page
    # metric names in words (the key as the tooltip); metrics.json keeps the keys
    assert f"{ROC_AUC}<td>0.7500</td>" in page
    assert (
        '<th scope="row" title="pr_auc"><span class="word">PR-AUC</span></th><td>0.8333</td>'
        in page
    )
    assert '<th scope="row" title="n">patches</th><td>4</td>' in page
    assert '<th scope="row">model</th><td class="text">&lt;cnn&gt;</td>' in page
    assert '<th scope="col">split</th><th scope="col" title="roc_auc">' in page  # extra table
    assert "&lt;cnn&gt;" in page and "per_class" not in page
    for name in ("roc.png", "pr.png", "confusion_matrix.png"):
        assert f'<img src="{name}"' in page
    assert "<th>true tumour</th><td>1</td><td>1</td>" in page
    assert "<h2>Per split</h2>" in page and "0.9123" in page
    assert "validation &amp; fixed" in page
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_write_html_report_minimal(tmp_path: Path) -> None:
    page = write_html_report(tmp_path / "r.html", "t", {"roc_auc": None}, []).read_text()
    assert '<td class="na">n/a</td>' in page
    assert "<img" not in page and "Confusion matrix" not in page and "Notes" not in page


def test_write_html_report_shows_confidence_intervals(tmp_path: Path) -> None:
    metrics = binary_metrics(Y, P) | {
        "ece": 0.25,
        "ci95": {
            "roc_auc": {"low": 0.5, "high": 1.0, "n_skipped": 3},
            "accuracy": {"low": 0.25, "high": 1.0, "n_skipped": 0},
            "sensitivity": {"low": None, "high": None, "n_skipped": 1000},
        },
    }
    page = write_html_report(tmp_path / "r.html", "t", metrics, ["reliability.png"]).read_text()
    assert f"{ROC_AUC}<td>0.7500 (0.5000–1.0000)</td>" in page
    assert '<th scope="row">accuracy</th><td>0.7500 (0.2500–1.0000)</td>' in page
    assert '<th scope="row">sensitivity</th><td>0.5000</td>' in page  # no interval: bare
    assert "expected calibration error (ECE)</th><td>0.2500</td>" in page
    assert "95% confidence interval" in page and "n_skipped" not in page
    assert '<img src="reliability.png"' in page


HOSTILE = "<script>alert(1)</script>"


def test_user_text_is_escaped_and_the_page_sound_in_chromium(tmp_path: Path, chromium: Any) -> None:
    metrics = write_evaluation(tmp_path, Y, P, n_resamples=0) | {"model": HOSTILE}
    path = write_html_report(
        tmp_path / "report.html",
        f"Evaluation on {HOSTILE}",
        metrics,
        ["roc.png", "pr.png"],
        extra_tables={HOSTILE: pd.DataFrame({HOSTILE: [HOSTILE, None], "x": [1.5, np.nan]})},
        notes=[HOSTILE],
        class_names=(HOSTILE, "tumour"),
        image_sections={"Error gallery": (["reliability.png", "confusion_matrix.png"], HOSTILE)},
    )
    page = path.read_text()
    assert "<script" not in page and page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 7
    assert page.count("<style>") == 1 and "<link" not in page  # one stylesheet, inlined
    opened = open_report(chromium, path)
    assert_sound(opened)
    assert opened.heading == opened.title == f"Evaluation on {HOSTILE}"
    assert [src for src, _ in opened.images] == [
        "roc.png",
        "pr.png",
        "reliability.png",
        "confusion_matrix.png",
    ]
    assert opened.rows["confusion"] == 2 and opened.rows["metrics"] == len(
        [v for v in metrics.values() if not isinstance(v, (dict, list))]
    )
    assert opened.rows["script-alert-1-script"] == 2  # the extra table, its id from its heading


def test_run_report_in_chromium(trained_run: RunResult, chromium: Any) -> None:
    opened = open_report(chromium, trained_run.run_dir / "report.html")
    assert_sound(opened)
    assert [src for src, _ in opened.images] == [
        "history.png",
        "roc.png",
        "pr.png",
        "confusion_matrix.png",
        "reliability.png",
        "augmentations.png",
    ]
    assert opened.rows["history"] == len(trained_run.history) == 1
    assert opened.rows["confusion"] == 2 and opened.rows["metrics"] >= 10
