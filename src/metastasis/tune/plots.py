"""Plots of a study: arrays and tables in, a matplotlib ``Figure`` out (no pyplot, no Optuna).

The trials table is the one `report.trials_table` builds: a row per trial with ``number``,
``state``, ``val_roc_auc`` and one column per searched parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

__all__ = ["plot_importances", "plot_intermediate", "plot_optimisation_history", "plot_slices"]

_STATE_STYLE = {"COMPLETE": ("tab:blue", "o"), "PRUNED": ("0.55", "x")}


def plot_optimisation_history(trials: pd.DataFrame) -> Figure:
    """Validation ROC-AUC of each finished trial and the best so far."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for state, (color, marker) in _STATE_STYLE.items():
        rows = trials[trials["state"] == state]
        if rows.empty:
            continue
        ax.scatter(rows["number"], rows["val_roc_auc"], c=color, marker=marker, label=state.lower())
    done = trials[trials["state"] == "COMPLETE"].sort_values("number")
    if len(done):
        best = done["val_roc_auc"].cummax()
        ax.step(done["number"], best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation ROC-AUC")
    ax.set_title("Optimisation history")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_importances(importances: Mapping[str, float]) -> Figure:
    """Horizontal bars: each parameter's share of the variation in validation ROC-AUC."""
    names = sorted(importances, key=lambda k: importances[k])
    fig = Figure(figsize=(6.0, 0.5 + 0.45 * max(len(names), 2)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (share of ROC-AUC variation)")
    ax.set_title("Parameter importances")
    ax.set_xlim(0, max([1e-9, *importances.values()]) * 1.1)
    return fig


def plot_slices(
    trials: pd.DataFrame, params: Sequence[str], log_scale: Mapping[str, bool] | None = None
) -> Figure:
    """One panel per parameter: validation ROC-AUC of finished trials against its value."""
    log_scale = log_scale or {}
    n = max(len(params), 1)
    cols = min(n, 3)
    rows_n = int(np.ceil(n / cols))
    fig = Figure(figsize=(3.6 * cols, 3.0 * rows_n), layout="constrained")
    finished = trials[trials["state"].isin(list(_STATE_STYLE))]
    for i, name in enumerate(params):
        ax = fig.add_subplot(rows_n, cols, i + 1)
        values = finished[name]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if numeric:
            x = values.astype(float)
        else:
            labels = sorted(values.astype(str).unique())
            x = values.astype(str).map({v: k for k, v in enumerate(labels)})
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(x, finished["val_roc_auc"], c=finished["number"], cmap="viridis", s=22)
        if numeric and log_scale.get(name):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(name)
        if i % cols == 0:
            ax.set_ylabel("validation ROC-AUC")
    fig.suptitle("Slices (colour: trial number)")
    return fig


def plot_intermediate(curves: Mapping[int, Mapping[int, float]], pruned: set[int]) -> Figure:
    """Validation ROC-AUC per epoch of each trial; pruned trials dashed."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for number, curve in sorted(curves.items()):
        epochs = sorted(curve)
        ax.plot(
            epochs,
            [curve[e] for e in epochs],
            linestyle="--" if number in pruned else "-",
            marker=".",
            color="0.6" if number in pruned else None,
            linewidth=1,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation ROC-AUC")
    ax.set_title("Learning curves (dashed: pruned)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
