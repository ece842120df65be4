"""Tests for metastasis.reports.names and its use by every report template: a person reads
"validation ROC-AUC" where the machine files keep ``val_roc_auc``."""

from __future__ import annotations

import json
import re
from html import unescape

import pandas as pd

from metastasis.engine.trainer import RunResult
from metastasis.reports.html import breakable, render_page, unbroken
from metastasis.reports.names import figure_caption, split_words, words


def _headings(page: str) -> list[str]:
    """The text of every <th> of a page, tags removed."""
    cells = re.findall(r"<th[^>]*>(.*?)</th>", page, re.S)
    return [unescape(re.sub(r"<[^>]+>", "", c)) for c in cells]


def test_words_name_metrics_with_their_split() -> None:
    assert words("val_roc_auc") == words("roc_auc", "val") == "validation ROC-AUC"
    assert words("roc_auc", "valid") == "validation ROC-AUC"
    assert words("train_loss") == "training loss"
    assert words("train_patches_per_s") == "training patches/s"
    assert words("best_val_roc_auc") == "best validation ROC-AUC"
    assert words("roc_auc") == "ROC-AUC" and words("ece") == "expected calibration error (ECE)"
    assert words("n", "val") == "validation patches"
    assert words("threshold", "val") == "decision threshold"  # not measured on a split
    assert words("lr") == "learning rate" and words("model_kwargs.dropout") == "model dropout"
    assert words("largest_diameter_mm") == "largest lesion: longest diameter (mm)"
    for unknown in ("<script>", "statistic [label]", "best_guess", "", 3):
        assert words(unknown) == str(unknown)  # shown as it is
    assert words("roc_auc", "fold3") == "fold3 ROC-AUC"
    assert [split_words(s) for s in ("train", "val", "valid", "test", "x")] == [
        "training", "validation", "validation", "test", "x",
    ]  # fmt: skip


def test_figure_captions() -> None:
    assert figure_caption("roc.png", "val") == "ROC curve, validation split (roc.png)"
    assert figure_caption("roc.png") == "ROC curve (roc.png)"
    assert figure_caption("errors_fp.png") == "errors_fp.png"
    assert "each class" in figure_caption("augmentations.png")


def test_text_filters_escape_and_mark_break_points() -> None:
    assert str(breakable("/a_b/<c>")) == "/<wbr>a_b/<wbr>&lt;c&gt;"
    assert str(unbroken("validation ROC-AUC")) == 'validation <span class="word">ROC-AUC</span>'
    assert str(unbroken("<x-y> z")) == '<span class="word">&lt;x-y&gt;</span> z'


def test_the_run_report_names_metrics_in_words(trained_run: RunResult) -> None:
    run = trained_run.run_dir
    page = (run / "report.html").read_text()
    shown = _headings(page)
    assert "Metrics on the validation split" in page
    for name in ("validation ROC-AUC", "validation accuracy", "decision threshold"):
        assert name in shown
    for name in ("training loss", "validation ROC-AUC", "validation PR-AUC", "learning rate"):
        assert name in shown  # the history table's header
    assert not any("_" in s for s in shown), shown  # no machine key left on the page
    assert 'title="val_roc_auc"' in page  # the key as the tooltip
    assert "ROC curve, validation split (roc.png)" in page
    # the machine files keep their keys
    assert "val_roc_auc" in pd.read_csv(run / "history.csv").columns
    assert "roc_auc" in json.loads((run / "metrics.json").read_text())["val"]


def test_the_tune_and_slides_pages_name_columns_in_words() -> None:
    tune = render_page(
        "tune.html",
        title="t",
        summary=[["best_val_roc_auc", 0.9], ["best_run_dir", "/a/b"]],
        best_params=[["lr", 0.001]],
        figures=[],
        trials_header=["number", "state", "val_roc_auc", "epochs_run", "run_dir"],
        trials=[[0, "COMPLETE", 0.9, 2, "/a/b"]],
        trial_classes=["complete"],
        notes=[],
    )
    shown = _headings(tune)
    assert shown[:3] == ["best validation ROC-AUC", "best trial's run folder", "parameter"]
    assert shown[-5:] == ["trial", "state", "validation ROC-AUC", "epochs run", "run folder"]
    assert "learning rate" in shown
    from metastasis.slides.report import HEADINGS, PATIENT_HEADINGS

    slides = render_page(
        "slides.html",
        title="t",
        notice="n",
        category_note="c",
        headings=list(HEADINGS.items()),
        rows=[["a_b", "ok", "macro-metastasis", 1.5, 2.25, 3, 9.0, 40, 0, 0, 0.972, ""]],
        row_classes=[""],
        patient_headings=list(PATIENT_HEADINGS.items()),
        stages=[["p", "a_b", "macro", "pN1"]],
        slides=[],
    )
    shown = _headings(slides)
    assert shown[:5] == [
        "slide",
        "status",
        "node category",
        "largest lesion: longest diameter (mm)",
        "tumour area (mm²)",
    ]
    assert "level-0 resolution (µm/pixel)" in shown and "pN stage (CAMELYON17)" in shown
