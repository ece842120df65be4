"""Metric plots: arrays (and an optional ``ax``) in, a matplotlib ``Figure`` out.

Only the object-oriented API is used (``matplotlib.figure.Figure``), never ``pyplot``, so the
functions hold no global state, need no display, and leave nothing open to close. Nothing here
writes a file: :func:`metastasis.reports.figures.save_figure` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import auc, average_precision_score

from metastasis.metrics.calibration import expected_calibration_error, reliability_curve
from metastasis.metrics.classification import check_binary_inputs, pr_points, roc_points

__all__ = [
    "figure_and_axes",
    "plot_confusion_matrix",
    "plot_history",
    "plot_pr",
    "plot_reliability",
    "plot_roc",
]

_HISTORY_PANELS = (("loss", "Loss"), ("accuracy", "Accuracy"), ("roc_auc", "ROC-AUC"))


def figure_and_axes(
    ax: Axes | None, figsize: tuple[float, float] = (4.5, 4.0)
) -> tuple[Figure, Axes]:
    """``ax``'s root figure and ``ax``; with no ``ax``, a new ``figsize`` figure and its axes."""
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot()
    root = ax.get_figure(root=True)
    if not isinstance(root, Figure):
        raise ValueError("ax must belong to a Figure")
    return root, ax


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _curve_label(label: str | None, name: str, value: float) -> str:
    score = f"{name} = {value:.3f}"
    return f"{label} ({score})" if label else score


def _one_class(y: npt.NDArray[np.int64]) -> bool:
    return not 0 < y.sum() < len(y)


def plot_roc(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, ax: Axes | None = None, label: str | None = None
) -> Figure:
    """ROC curve with its AUC in the legend and the chance diagonal."""
    y, p = check_binary_inputs(y_true, y_prob)
    fig, ax = figure_and_axes(ax)
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    if _one_class(y):
        _note(ax, "ROC undefined:\nonly one class present")
    else:
        fpr, tpr, _ = roc_points(y, p)
        ax.plot(fpr, tpr, linewidth=2, label=_curve_label(label, "AUC", auc(fpr, tpr)))
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
    ax.set_title("ROC curve")
    ax.set_aspect("equal")
    ax.legend(loc="lower right")
    return fig


def plot_pr(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, ax: Axes | None = None, label: str | None = None
) -> Figure:
    """Precision-recall curve with average precision in the legend and the prevalence baseline."""
    y, p = check_binary_inputs(y_true, y_prob)
    fig, ax = figure_and_axes(ax)
    prevalence = float(y.mean())
    ax.axhline(
        prevalence, linestyle="--", color="0.6", linewidth=1, label=f"prevalence = {prevalence:.3f}"
    )
    if _one_class(y):
        _note(ax, "PR curve undefined:\nonly one class present")
    else:
        precision, recall, _ = pr_points(y, p)
        ap = average_precision_score(y, p)
        ax.step(recall, precision, where="post", linewidth=2, label=_curve_label(label, "AP", ap))
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall (sensitivity)", ylabel="Precision")
    ax.set_title("Precision-recall curve")
    ax.set_aspect("equal")
    ax.legend(loc="lower left")
    return fig


def plot_reliability(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    n_bins: int = 15,
    ax: Axes | None = None,
    label: str | None = None,
) -> Figure:
    """Reliability diagram: observed fraction of tumour against mean predicted probability per
    equal-width bin (empty bins left out), the diagonal of perfect calibration, ECE in the legend,
    and the number of patches per bin as grey bars along the bottom (log scale, on a twin of
    ``ax`` whose right axis reads the counts).
    """
    y, p = check_binary_inputs(y_true, y_prob)
    fig, ax = figure_and_axes(ax)
    curve = reliability_curve(y, p, n_bins)
    edges, count = curve["bin_edges"], curve["count"]
    filled = count > 0
    counts_ax = ax.twinx()
    counts_ax.bar(
        edges[:-1], count, width=np.diff(edges), align="edge", color="0.85", edgecolor="0.7"
    )
    counts_ax.set_yscale("log")
    # bars from 0.5 (a single patch shows) up to a third of the height: the curve stays clear
    most = max(int(count.max()), 1)
    counts_ax.set_ylim(0.5, 0.5 * (most / 0.5) ** 3)
    counts_ax.set_yticks([10**k for k in range(len(str(most)))])  # powers of ten up to `most`
    counts_ax.minorticks_off()
    counts_ax.set_ylabel("Patches per bin", color="0.4")
    counts_ax.tick_params(axis="y", colors="0.4")
    ax.set_zorder(counts_ax.get_zorder() + 1)  # the curve over the bars
    ax.patch.set_visible(False)
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="perfect calibration")
    ece = expected_calibration_error(y, p, n_bins)
    ax.plot(
        curve["mean_predicted"][filled],
        curve["observed_fraction"][filled],
        marker="o",
        markersize=4,
        linewidth=2,
        label=_curve_label(label, "ECE", ece),
    )
    ax.set(
        xlim=(0, 1), ylim=(0, 1.01), xlabel="Mean predicted probability", ylabel="Fraction tumour"
    )
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left")
    return fig


def plot_confusion_matrix(
    cm: npt.ArrayLike, class_names: Sequence[str] = ("normal", "tumour"), ax: Axes | None = None
) -> Figure:
    """Confusion matrix ``[[tn, fp], [fn, tp]]`` (rows true, columns predicted) with counts."""
    counts = np.asarray(cm)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"cm must have shape ({k}, {k}) to match class_names, got {counts.shape}")
    fig, ax = figure_and_axes(ax, figsize=(4.0, 3.6))
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    limit = counts.max() / 2 if counts.size else 0
    for (i, j), value in np.ndenumerate(counts):
        colour = "white" if value > limit else "black"
        ax.text(j, i, f"{value:,}", ha="center", va="center", color=colour, fontsize=12)
    ticks = list(range(k))
    ax.set_xticks(ticks, labels=list(class_names))
    ax.set_yticks(ticks, labels=list(class_names))
    ax.set(xlabel="Predicted", ylabel="True")
    ax.set_title("Confusion matrix")
    return fig


def plot_history(history: pd.DataFrame) -> Figure:
    """Loss, accuracy and ROC-AUC per epoch (train and validation); missing columns are skipped."""
    fig = Figure(figsize=(13.0, 3.8), layout="constrained")
    axes = fig.subplots(1, len(_HISTORY_PANELS))
    epochs = history["epoch"].to_numpy() if "epoch" in history else np.arange(1, len(history) + 1)
    for ax, (metric, title) in zip(axes, _HISTORY_PANELS, strict=True):
        drawn = False
        for split, style, colour in (("train", "-", "C0"), ("val", "--", "C1")):
            column = f"{split}_{metric}"
            if column in history and history[column].notna().any():
                ax.plot(
                    epochs,
                    history[column],
                    style,
                    color=colour,
                    marker="o",
                    markersize=3,
                    label=split,
                )
                drawn = True
        if drawn:
            ax.legend()
        else:
            _note(ax, "no data")
        ax.set(xlabel="Epoch", ylabel=title)
        ax.set_title(title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return fig
