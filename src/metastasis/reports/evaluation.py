"""Evaluation reports: compute metrics, draw plots, and write PNG and HTML files into a folder."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pandas as pd

from metastasis.io import atomic_write_text
from metastasis.metrics.evaluation import evaluation_metrics
from metastasis.metrics.plots import (
    plot_confusion_matrix,
    plot_pr,
    plot_reliability,
    plot_roc,
    save_figure,
)

__all__ = ["evaluation_metrics", "write_evaluation", "write_evaluation_plots", "write_html_report"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #ddd; padding-bottom: .4rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #ddd; padding: .3rem .7rem; text-align: right; }
th { background: #f4f4f4; text-align: left; }
td.na { color: #999; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #666; text-align: center; }
ul.notes li { margin: .2rem 0; }
p.caption { font-size: .85rem; color: #666; margin-top: 0; }
figure.wide { margin: 0 0 1rem; }
""".strip()


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


def _format_value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _interval(ci: Any, key: str) -> str:
    """`` (low–high)`` from ``ci[key]`` when both ends are numbers, else an empty string."""
    bounds = ci.get(key) if isinstance(ci, Mapping) else None
    if not isinstance(bounds, Mapping):
        return ""
    low, high = bounds.get("low"), bounds.get("high")
    if not isinstance(low, float) or not isinstance(high, float):
        return ""
    return f" ({low:.4f}–{high:.4f})"


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    """Scalar metrics, one row each; a metric with a ``ci95`` entry shows it in parentheses."""
    ci = metrics.get("ci95")
    rows = []
    for key, value in metrics.items():
        if isinstance(value, (Mapping, list, tuple)):
            continue
        cls = ' class="na"' if value is None else ""
        shown = _format_value(value) + (_interval(ci, key) if isinstance(value, float) else "")
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td{cls}>{shown}</td></tr>")
    table = "<table>\n" + "\n".join(rows) + "\n</table>"
    if any(_interval(ci, key) for key in metrics):
        table += (
            '\n<p class="caption">In parentheses: 95% confidence interval (percentile bootstrap'
            " over patches).</p>"
        )
    return table


def _confusion_table(cm: Sequence[Sequence[int]], class_names: Sequence[str]) -> str:
    names = [html.escape(name) for name in class_names]
    head = "".join(f"<th>predicted {name}</th>" for name in names)
    rows = "".join(
        f"<tr><th>true {name}</th>" + "".join(f"<td>{_format_value(v)}</td>" for v in row) + "</tr>"
        for name, row in zip(names, cm, strict=True)
    )
    return f"<table>\n<tr><th></th>{head}</tr>\n{rows}\n</table>"


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
) -> Path:
    """Write a small HTML page: metrics table, confusion matrix, images (by relative name),
    ``image_sections`` (heading -> (images, caption)), extra tables and notes. Returns the path
    written."""
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Metrics</h2>", _metrics_table(metrics)]
    cm = metrics.get("confusion_matrix")
    if cm is not None:
        parts += ["<h2>Confusion matrix</h2>", _confusion_table(cm, class_names)]
    if images:
        figures = "\n".join(
            f'<figure><img src="{html.escape(name, quote=True)}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>"
            for name in images
        )
        parts += ["<h2>Figures</h2>", f'<div class="figures">\n{figures}\n</div>']
    for heading, (names, caption) in (image_sections or {}).items():
        parts += [
            f"<h2>{html.escape(heading)}</h2>",
            f'<p class="caption">{html.escape(caption)}</p>',
        ]
        parts += [
            f'<figure class="wide"><img src="{html.escape(name, quote=True)}" '
            f'alt="{html.escape(heading)}: {html.escape(name)}"></figure>'
            for name in names
        ]
    for heading, frame in (extra_tables or {}).items():
        table = frame.to_html(float_format=lambda x: f"{x:.4f}", border=0, na_rep="n/a")
        parts += [f"<h2>{html.escape(heading)}</h2>", table]
    if notes:
        items = "\n".join(f"<li>{html.escape(note)}</li>" for note in notes)
        parts += ["<h2>Notes</h2>", f'<ul class="notes">\n{items}\n</ul>']
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    return atomic_write_text(path, page)
