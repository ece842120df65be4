"""Tests for metastasis.reports.evaluation: PNGs and HTML written into a folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from metastasis.metrics.classification import binary_metrics
from metastasis.reports.evaluation import write_evaluation, write_html_report

Y = [0, 0, 1, 1]
P = [0.1, 0.4, 0.35, 0.8]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_write_evaluation(tmp_path: Path) -> None:
    metrics = write_evaluation(tmp_path, Y, P, threshold=0.5, prefix="test_")
    assert metrics == binary_metrics(Y, P)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["test_confusion_matrix.png", "test_pr.png", "test_roc.png"]
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 100


def test_write_evaluation_single_class(tmp_path: Path) -> None:
    metrics = write_evaluation(tmp_path, [0, 0, 0], [0.1, 0.6, 0.3])
    assert metrics["roc_auc"] is None
    assert len(list(tmp_path.iterdir())) == 3


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
    assert "<th>roc_auc</th><td>0.7500</td>" in page
    assert "<th>pr_auc</th><td>0.8333</td>" in page
    assert "<th>n</th><td>4</td>" in page
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
