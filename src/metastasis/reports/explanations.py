"""Pictures of Grad-CAM explanations: patches beside their overlays, with what the model said.

Pure drawing: arrays and captions in, a matplotlib ``Figure`` out (``reports.figures.save_figure``
writes it atomically). The heat maps and overlays come from ``inference.explain``. An overlay
whose heat map is empty (``Explained.cam_empty``: nothing raised the tumour logit) would be a plain
blue square that reads as a broken image, so it carries the words ``NOTHING_TO_SHOW``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

WRONG = "#c0392b"  # caption colour of a patch whose prediction is not its truth
RIGHT = "#222222"
NOTHING_TO_SHOW = "no activation:\nnothing to show"  # written across an empty overlay


@dataclass(frozen=True)
class Explained:
    """One explained patch: the patch with its centre outlined, its overlay, and the words."""

    id: str
    patch: np.ndarray  # uint8 H x W x 3, centre outlined
    overlay: np.ndarray  # uint8 H x W x 3
    probability: float
    prediction: str  # class name at the checkpoint's threshold
    truth: str | None = None  # class name, None when unknown
    cam_empty: bool = False  # the heat map is empty: the overlay has nothing to show

    @property
    def wrong(self) -> bool:
        return self.truth is not None and self.truth != self.prediction

    def caption(self, width: int = 26) -> str:
        name = self.id if len(self.id) <= width else self.id[: width - 1] + "…"
        truth = f", truth {self.truth}" if self.truth is not None else ""
        return f"{name}\np = {self.probability:.3f}: {self.prediction}{truth}"


def plot_explanations(items: Sequence[Explained], ncols: int = 4, title: str = "") -> Figure:
    """A grid of tiles, each the patch (centre outlined) and its Grad-CAM overlay side by side,
    captioned with id, probability, predicted label and truth (red where they differ)."""
    n = max(1, len(items))
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    head = 0.4 if title else 0.05
    fig = Figure(figsize=(2.9 * ncols, 1.85 * nrows + head), dpi=110)
    parts = fig.subfigures(2, 1, squeeze=False, height_ratios=[head, 1.85 * nrows])
    top, body = parts[0, 0], parts[1, 0]
    if title:
        top.suptitle(title, fontsize=10, y=0.75)
    subfigs = np.atleast_1d(body.subfigures(nrows, ncols, squeeze=False)).reshape(-1)
    for k, sub in enumerate(subfigs):
        axes = sub.subplots(1, 2)
        for ax in axes:
            ax.set_axis_off()
        if k >= len(items):
            continue
        item = items[k]
        axes[0].imshow(item.patch, interpolation="nearest")
        axes[1].imshow(item.overlay, interpolation="nearest")
        if item.cam_empty:
            _say_nothing_to_show(axes[1], fontsize=6)
        sub.suptitle(item.caption(), fontsize=7.5, color=WRONG if item.wrong else RIGHT, y=0.99)
        sub.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.78, wspace=0.04)
    if not items:
        fig.text(0.5, 0.5, "no patches", ha="center", va="center", fontsize=9, color="#666")
    return fig


def plot_explanation(item: Explained) -> Figure:
    """One patch and its overlay, larger, with the caption as title."""
    fig = Figure(figsize=(4.6, 2.7), dpi=110)
    axes = fig.subplots(1, 2)
    for ax, image, name in zip(axes, (item.patch, item.overlay), ("patch", "Grad-CAM")):
        ax.imshow(image, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(name, fontsize=8, color="#666")
    if item.cam_empty:
        _say_nothing_to_show(axes[1], fontsize=8)
    fig.suptitle(item.caption(width=48), fontsize=9, color=WRONG if item.wrong else RIGHT)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.74, wspace=0.05)
    return fig


def _say_nothing_to_show(ax: Axes, fontsize: float) -> None:
    """``NOTHING_TO_SHOW`` across the middle of an overlay's axes, on a pale box."""
    ax.text(
        0.5,
        0.5,
        NOTHING_TO_SHOW,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=fontsize,
        color=RIGHT,
        bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "alpha": 0.85, "linewidth": 0},
    )
