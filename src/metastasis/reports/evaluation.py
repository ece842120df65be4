"""Evaluation reports: compute metrics, draw plots, and write PNG and HTML files into a folder.

The page is the template ``templates/evaluation.html`` (:mod:`metastasis.reports.html`); the
training run folder, ``evaluate`` and the error gallery all use :func:`write_html_report`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pandas as pd

from metastasis.metrics.evaluation import evaluation_metrics
from metastasis.metrics.plots import plot_confusion_matrix, plot_pr, plot_reliability, plot_roc
from metastasis.reports.figures import save_figure
from metastasis.reports.html import frame_table, write_page

__all__ = ["evaluation_metrics", "write_evaluation", "write_evaluation_plots", "write_html_report"]


def write_evaluation(
    out_dir: str | os.PathLike[str],
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    threshold: float = 0.5,
    prefix: str = "",
    *,
    n_bins: int = 15,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compute metrics and write ``{prefix}roc.png``, ``{prefix}pr.png``,
    ``{prefix}confusion_matrix.png`` and ``{prefix}reliability.png`` into ``out_dir``; return the
    metrics (no JSON is written).

    The metrics are :func:`binary_metrics` plus ``ece`` (``n_bins`` equal-width bins) and
    ``ci95``: 95% percentile-bootstrap intervals of ROC-AUC, accuracy, sensitivity and
    specificity (:func:`bootstrap_ci`, ``n_resamples`` resamples from ``seed``; ``n_resamples=0``
    leaves ``ci95`` out).
    """
    metrics = evaluation_metrics(
        y_true, y_prob, threshold, n_bins=n_bins, n_resamples=n_resamples, seed=seed
    )
    write_evaluation_plots(out_dir, y_true, y_prob, metrics, prefix, n_bins=n_bins)
    return metrics


def write_evaluation_plots(
    out_dir: str | os.PathLike[str],
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    metrics: Mapping[str, Any],
    prefix: str = "",
    *,
    n_bins: int = 15,
) -> None:
    """Write ``{prefix}roc.png``, ``{prefix}pr.png``, ``{prefix}confusion_matrix.png`` (from
    ``metrics["confusion_matrix"]``) and ``{prefix}reliability.png`` into ``out_dir``."""
    out = Path(out_dir)
    save_figure(plot_roc(y_true, y_prob), out / f"{prefix}roc.png")
    save_figure(plot_pr(y_true, y_prob), out / f"{prefix}pr.png")
    save_figure(
        plot_confusion_matrix(metrics["confusion_matrix"]), out / f"{prefix}confusion_matrix.png"
    )
    save_figure(plot_reliability(y_true, y_prob, n_bins), out / f"{prefix}reliability.png")


def _interval(ci: Any, key: str) -> str:
    """`` (low–high)`` from ``ci[key]`` when both ends are numbers, else an empty string."""
    bounds = ci.get(key) if isinstance(ci, Mapping) else None
    if not isinstance(bounds, Mapping):
        return ""
    low, high = bounds.get("low"), bounds.get("high")
    if not isinstance(low, float) or not isinstance(high, float):
        return ""
    return f" ({low:.4f}–{high:.4f})"


def _slug(heading: str) -> str:
    """An HTML id from a heading: lower case, runs of other characters to one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-") or "table"


def write_html_report(
    path: str | os.PathLike[str],
    title: str,
    metrics: Mapping[str, Any],
    images: Sequence[str],
    extra_tables: Mapping[str, pd.DataFrame] | None = None,
    notes: Sequence[str] | None = None,
    *,
    class_names: Sequence[str] = ("normal", "tumour"),
    image_sections: Mapping[str, tuple[Sequence[str], str]] | None = None,
    split: str | None = None,
    warning: str | None = None,
) -> Path:
    """Write a small HTML page (template ``evaluation.html``): metrics table (scalar metrics,
    one row each, a ``ci95`` interval in parentheses), confusion matrix, images (by relative
    name), ``image_sections`` (heading -> (images, caption)), extra tables and notes, under a
    ``warning`` first where the model has one (trained on synthetic drawings). Returns the
    path written.

    Metrics are named in words with the split they were measured on (``split="val"``:
    "validation ROC-AUC"); without ``split``, ``metrics["split"]`` where it is a name. The
    names are the page's only: the keys of ``metrics`` stay what they are."""
    ci = metrics.get("ci95")
    if split is None and isinstance(metrics.get("split"), str):
        split = str(metrics["split"])
    rows = [
        (str(key), value, _interval(ci, key) if isinstance(value, float) else "")
        for key, value in metrics.items()
        if not isinstance(value, (Mapping, list, tuple))
    ]
    cm = metrics.get("confusion_matrix")
    return write_page(
        path,
        "evaluation.html",
        title=title,
        warning=warning,
        split=split,
        metrics=rows,
        has_intervals=any(interval for _, _, interval in rows),
        class_names=list(class_names),
        confusion=None if cm is None else list(zip(class_names, cm, strict=True)),
        images=list(images),
        sections=[
            (heading, caption, list(names))
            for heading, (names, caption) in (image_sections or {}).items()
        ],
        tables=[
            (heading, _slug(heading), *frame_table(frame))
            for heading, frame in (extra_tables or {}).items()
        ],
        notes=list(notes or []),
    )
