"""Tests for metastasis.metrics.plots: arrays in, Figures out, no files and no pyplot."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from metastasis.metrics.plots import (
    plot_confusion_matrix,
    plot_history,
    plot_pr,
    plot_reliability,
    plot_roc,
)

Y = [0, 0, 1, 1]
P = [0.1, 0.4, 0.35, 0.8]


def _legend_texts(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_plot_roc() -> None:
    fig = plot_roc(Y, P, label="model")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert any("model (AUC = 0.750)" in t for t in _legend_texts(fig))
    assert len(fig.axes[0].lines) == 2  # chance diagonal + curve


def test_plot_pr() -> None:
    fig = plot_pr(Y, P)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    texts = _legend_texts(fig)
    assert any("AP = 0.833" in t for t in texts)
    assert any("prevalence = 0.500" in t for t in texts)


def test_plots_draw_into_given_axes() -> None:
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plot_roc(Y, P, ax=left) is fig
    assert plot_pr(Y, P, ax=right) is fig
    assert len(fig.axes) == 2


@pytest.mark.parametrize("plot", [plot_roc, plot_pr])
def test_single_class_plots_without_warning(plot: Callable[..., Figure]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot([1, 1, 1], [0.2, 0.5, 0.9])
    assert "one class" in " ".join(t.get_text() for t in fig.axes[0].texts)


def test_plot_reliability() -> None:
    y, p = [0, 0, 1, 0, 1, 1, 1, 0], [0.0, 0.1, 0.2, 0.3, 0.55, 0.6, 0.9, 1.0]
    fig = plot_reliability(y, p, n_bins=5, label="model")
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # curve + twin axes of counts
    assert any("model (ECE = 0.344)" in t for t in _legend_texts(fig))
    diagonal, curve = fig.axes[0].lines
    np.testing.assert_allclose(np.asarray(diagonal.get_xdata(), float), [0.0, 1.0])
    np.testing.assert_allclose(  # empty bin left out
        np.asarray(curve.get_xdata(), float), [0.1, 0.3, 0.575, 0.95]
    )
    np.testing.assert_allclose(np.asarray(curve.get_ydata(), float), [1 / 3, 0.0, 1.0, 0.5])
    bars = [b for b in fig.axes[1].patches if isinstance(b, Rectangle)]
    assert [round(b.get_height()) for b in bars] == [3, 1, 2, 0, 2]


def test_plot_reliability_into_given_axes_and_one_class_without_warning() -> None:
    fig = Figure()
    ax = fig.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plot_reliability([1, 1, 1], [0.2, 0.5, 0.9], ax=ax) is fig
        fig.savefig(io.BytesIO(), format="png")  # renders without warnings too
    assert len(fig.axes) == 2


def test_plot_confusion_matrix() -> None:
    fig = plot_confusion_matrix([[2, 0], [1, 1]])
    assert len(fig.axes) == 2  # matrix + colorbar
    annotations = sorted(t.get_text() for t in fig.axes[0].texts)
    assert annotations == ["0", "1", "1", "2"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["normal", "tumour"]
    with pytest.raises(ValueError, match="shape"):
        plot_confusion_matrix([[1, 2, 3]])


def test_plot_history_full() -> None:
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [0.7, 0.5, 0.4],
            "val_loss": [0.72, 0.6, 0.55],
            "train_accuracy": [0.5, 0.7, 0.8],
            "val_accuracy": [0.5, 0.65, 0.7],
            "train_roc_auc": [0.6, 0.8, 0.9],
            "val_roc_auc": [0.6, 0.75, 0.8],
        }
    )
    fig = plot_history(history)
    assert len(fig.axes) == 3
    assert [len(ax.lines) for ax in fig.axes] == [2, 2, 2]
    assert [ax.get_title() for ax in fig.axes] == ["Loss", "Accuracy", "ROC-AUC"]


def test_plot_history_missing_columns() -> None:
    fig = plot_history(pd.DataFrame({"train_loss": [0.7, 0.5], "val_accuracy": [0.5, np.nan]}))
    assert len(fig.axes) == 3
    assert [len(ax.lines) for ax in fig.axes] == [1, 1, 0]
    assert plot_history(pd.DataFrame()).axes[2].texts[0].get_text() == "no data"


def test_import_has_no_pyplot_side_effect() -> None:
    code = (
        "import sys, metastasis.metrics as m; assert 'matplotlib' not in sys.modules;"
        "import metastasis.metrics.plots; assert 'matplotlib.pyplot' not in sys.modules;"
        "assert 'metastasis.io' not in sys.modules"  # pure compute: nothing here writes files
    )
    src = Path(__file__).resolve().parents[2] / "src"
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(src)}
    )
