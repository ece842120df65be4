"""Figures of the EDA report, pure (no files); the page itself is :mod:`.page`.

Arrays (and an optional ``ax``) in, a matplotlib ``Figure`` out, object-oriented API only (no
``pyplot``: no global state, no display). Classes are keyed by name (``"0"``, ``"1"``,
``"unlabelled"``) and always drawn in the same colours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from metastasis.eda.image_stats import HUE_MIN_SATURATION
from metastasis.metrics.plots import figure_and_axes

__all__ = [
    "CLASS_COLOURS",
    "class_label",
    "plot_centre_vs_ring",
    "plot_class_balance",
    "plot_groups",
    "plot_patch_distributions",
    "plot_pca_map",
    "plot_pixel_histograms",
    "plot_thumbnails",
]

CLASS_COLOURS = {"0": "#2b7bba", "1": "#d7301f", "unlabelled": "#7f7f7f"}
CLASS_NAMES = {"0": "0 normal", "1": "1 tumour", "unlabelled": "unlabelled"}


def class_label(name: str) -> str:
    return CLASS_NAMES.get(name, name)


def _colour(name: str, k: int) -> str:
    return CLASS_COLOURS.get(name, f"C{k + 2}")


def plot_class_balance(counts: Mapping[str, Mapping[str, int]], ax: Axes | None = None) -> Figure:
    """Bars of patches per class, grouped by split, each labelled with count and percentage."""
    fig, ax = figure_and_axes(ax, figsize=(max(4.0, 2.2 * len(counts) + 1.5), 3.6))
    classes = sorted({c for per_split in counts.values() for c in per_split})
    width = 0.8 / max(len(classes), 1)
    top = max((v for per in counts.values() for v in per.values()), default=0)
    for k, cls in enumerate(classes):
        xs, heights = [], []
        for i, per_split in enumerate(counts.values()):
            xs.append(i - 0.4 + width * (k + 0.5))
            heights.append(per_split.get(cls, 0))
        bars = ax.bar(xs, heights, width, color=_colour(cls, k), label=class_label(cls))
        for bar, split_counts in zip(bars, counts.values()):
            total = sum(split_counts.values())
            h = bar.get_height()
            pct = f"\n{100 * h / total:.1f}%" if total else ""
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                h,
                f"{int(h):,}{pct}",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.set_xticks(range(len(counts)), labels=list(counts))
    ax.set_ylim(0, top * 1.25 + 1)
    ax.set(xlabel="split", ylabel="patches")
    ax.set_title("Class balance")
    # beside the axes, never over a bar's count (constrained layout makes room for it)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, fontsize=8)
    return fig


_CELL, _GAP, _CAPTION = 96, 6, 16  # thumbnail grid: pixels per patch, between, above


def plot_thumbnails(
    images: Sequence[np.ndarray | None],
    captions: Sequence[str] = (),
    ncols: int = 8,
    outline_centre: bool = False,
) -> Figure:
    """A grid of patches (up to 96x96, one mosaic image: fast for many) with a caption above
    each; ``None`` leaves a cell empty but keeps its caption (e.g. "unreadable").
    ``outline_centre`` outlines each patch's central third (the 32x32 label region)."""
    n = max(len(images), 1)
    ncols = max(1, min(ncols, max(n, 4)))  # at least 4 cells wide: room for the captions
    nrows = -(-n // ncols)
    step_x, step_y = _CELL + 2 + _GAP, _CELL + 2 + _GAP + _CAPTION  # 2: the frame
    mosaic = np.full((nrows * step_y, ncols * step_x - _GAP, 3), 255, np.uint8)
    for k, img in enumerate(images):
        if img is None:
            continue
        y, x = (k // ncols) * step_y + _CAPTION, (k % ncols) * step_x
        h, w = min(img.shape[0], _CELL), min(img.shape[1], _CELL)
        mosaic[y - 1 : y + h + 1, x : x + w + 2] = 160  # a thin grey frame
        mosaic[y : y + h, x + 1 : x + w + 1] = np.asarray(img)[:h, :w, :3]
        if outline_centre:
            top, left, size = y + h // 3, x + 1 + w // 3, w // 3
            for rr, cc in (
                (slice(top, top + 2), slice(left, left + size)),
                (slice(top + size - 2, top + size), slice(left, left + size)),
                (slice(top, top + size), slice(left, left + 2)),
                (slice(top, top + size), slice(left + size - 2, left + size)),
            ):
                mosaic[rr, cc] = (0, 229, 255)
    fig = Figure(figsize=(mosaic.shape[1] / 72, mosaic.shape[0] / 72))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for k, caption in enumerate(captions[: len(images)]):
        top, middle = (k // ncols) * step_y + _CAPTION - 3, (k % ncols) * step_x + _CELL / 2 + 1
        ax.text(middle, top, caption, ha="center", va="bottom", fontsize=6.5, clip_on=True)
    return fig


def plot_groups(
    groups: Sequence[Sequence[np.ndarray | None]],
    captions: Sequence[Sequence[str]],
    per_row: int = 4,
) -> Figure:
    """One row per group of related patches (duplicates, near-duplicates): at most ``per_row``
    of each group, rows padded with empty cells."""
    images: list[np.ndarray | None] = []
    texts: list[str] = []
    for group, caps in zip(groups, captions):
        shown = list(group[:per_row])
        images += shown + [None] * (per_row - len(shown))
        texts += list(caps[:per_row]) + [""] * (per_row - len(shown))
    return plot_thumbnails(images, texts, ncols=per_row)


_HIST_TITLES = {
    "grey": ("Brightness (grey level)", "grey level (0 black, 255 white)"),
    "saturation": ("Saturation", "HSV saturation"),
    "hue": (f"Hue (pixels with saturation >= {HUE_MIN_SATURATION:g})", "hue (degrees)"),
}


def plot_pixel_histograms(
    densities: Mapping[str, Mapping[str, np.ndarray]], bins: int = 64
) -> Figure:
    """Pixel-level distributions per class: ``densities[class][channel]`` = 256 bin fractions
    for channels grey (levels 0-255), saturation (0-1) and hue (0-1, shown in degrees), merged
    into ``bins`` bins for display."""
    channels = [c for c in _HIST_TITLES if any(c in d for d in densities.values())]
    fig = Figure(figsize=(4.2 * len(channels), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(channels)))
    for ax, channel in zip(axes, channels):
        top = {"grey": 256.0, "hue": 360.0}.get(channel, 1.0)
        edges = np.linspace(0, top, bins + 1)
        for k, (cls, per_channel) in enumerate(densities.items()):
            if channel in per_channel:
                y = np.asarray(per_channel[channel], dtype=np.float64).reshape(bins, -1).sum(1)
                ax.stairs(y, edges, fill=True, alpha=0.25, color=_colour(cls, k))
                ax.stairs(y, edges, color=_colour(cls, k), label=class_label(cls), linewidth=1.2)
        title, xlabel = _HIST_TITLES[channel]
        ax.set(xlabel=xlabel, ylabel="fraction of pixels", xlim=(0, top))
        ax.set_title(title)
        ax.legend(fontsize=7)
    return fig


def plot_patch_distributions(
    values: Mapping[str, Mapping[str, np.ndarray]],
    panels: Sequence[tuple[str, str, float | None, bool]],
) -> Figure:
    """Per-patch distributions per class (density histograms, one colour per class).

    ``values[class][name]`` is one value per patch; ``panels`` lists ``(name, title, threshold
    or None, log10 x axis)``; a threshold is drawn as a dashed line."""
    fig = Figure(figsize=(3.6 * len(panels), 3.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, title, threshold, log) in zip(axes, panels):
        arrays = [np.asarray(v[name], dtype=np.float64) for v in values.values()]
        data = [np.log10(1 + a) if log else a for a in arrays]
        finite = np.concatenate([d[np.isfinite(d)] for d in data]) if data else np.zeros(0)
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 41)
        for k, (cls, d) in enumerate(zip(values, data)):
            if d.size:
                _class_hist(ax, d, bins, _colour(cls, k), class_label(cls))
        if threshold is not None:
            ax.axvline(
                np.log10(1 + threshold) if log else threshold,
                color="0.3",
                linestyle="--",
                linewidth=1,
                label="flag threshold",
            )
        ax.set(xlabel=f"log10(1 + {name})" if log else name, ylabel="density")
        ax.set_title(title)
        ax.legend(fontsize=7)
    return fig


def _class_hist(ax: Axes, d: np.ndarray, bins: np.ndarray, colour: Any, label: str) -> None:
    """One class's density histogram, filled and translucent so classes overlay."""
    ax.hist(
        d,
        bins=bins.tolist(),
        density=True,
        histtype="stepfilled",
        alpha=0.3,
        color=colour,
        edgecolor=colour,
        label=label,
    )


def plot_centre_vs_ring(
    values: Mapping[str, Mapping[str, np.ndarray]], panels: Sequence[tuple[str, str]]
) -> Figure:
    """Per-patch difference centre (label region) minus ring, per class, for each
    ``(statistic, title)``: ``values[class][f"centre_{stat}"]`` and ``[f"ring_{stat}"]``."""
    fig = Figure(figsize=(3.6 * len(panels), 3.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (stat, title) in zip(axes, panels):
        diffs = {
            c: np.asarray(v[f"centre_{stat}"], np.float64) - np.asarray(v[f"ring_{stat}"])
            for c, v in values.items()
        }
        finite = np.concatenate(list(diffs.values())) if diffs else np.zeros(0)
        lim = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
        bins = np.linspace(-lim, lim, 41) if lim > 0 else np.linspace(-1, 1, 41)
        for k, (cls, d) in enumerate(diffs.items()):
            if d.size:
                label = f"{class_label(cls)} (mean {d.mean():+.3g})"
                _class_hist(ax, np.clip(d, bins[0], bins[-1]), bins, _colour(cls, k), label)
        ax.axvline(0, color="0.3", linewidth=1)
        ax.set(xlabel="centre - ring", ylabel="density")
        ax.set_title(title)
        ax.legend(fontsize=7)
    return fig


def plot_pca_map(
    coords: np.ndarray,
    classes: Sequence[str],
    explained: Sequence[float] = (),
    ax: Axes | None = None,
) -> Figure:
    """2-D map of patches (e.g. the first two principal components), one colour per class;
    points are drawn in the order given (shuffle them so that no class hides another)."""
    fig, ax = figure_and_axes(ax, figsize=(6.0, 5.0))
    xy = np.asarray(coords, dtype=np.float64)
    names = [str(c) for c in classes]
    order = sorted(set(names))
    colours = [_colour(n, order.index(n)) for n in names]
    ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.45, c=colours, linewidths=0)
    for k, name in enumerate(order):  # legend entries only
        count = f"{names.count(name):,}"
        ax.scatter([], [], s=12, color=_colour(name, k), label=f"{class_label(name)} ({count})")
    labels = [
        f"PC{i + 1}" + (f" ({100 * e:.1f}% of variance)" if e else "")
        for i, e in enumerate([*explained, 0, 0][:2])
    ]
    ax.set(xlabel=labels[0], ylabel=labels[1])
    ax.set_title("Patches by colour and texture (PCA)")
    ax.legend(markerscale=3, fontsize=8)
    return fig
