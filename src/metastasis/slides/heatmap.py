"""The heatmap figure of a slide, as a pathologist reads it: the probability map over the
thumbnail, axes and a scale bar in mm, a legend for the tissue outline and the lesion outlines,
the node's category in the title and a colour bar of the probability.

:func:`slide_heatmap` draws from plain arrays (the pure plot); :func:`heatmap_figure` takes a
``SlideResult``. Fixed axes places, no layout pass: one draw when saved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from metastasis.slides.analyse import SlideResult

TISSUE_COLOUR = "#00a0ff"
LESION_COLOUR = "#00ff60"
CATEGORY_WORDS = {
    "negative": "negative (no lesion found)",
    "itc": "isolated tumour cells (ITC, ≤ 0.2 mm)",
    "micro": "micro-metastasis (> 0.2 to ≤ 2 mm)",
    "macro": "macro-metastasis (> 2 mm)",
}


def heatmap_figure(result: SlideResult, max_inches: float = 9.0) -> Figure:
    """The heatmap of one analysed slide (:func:`slide_heatmap` of its arrays)."""
    g = result.geometry
    largest = result.lesions[0].diameter_mm if result.lesions else None
    return slide_heatmap(
        result.thumbnail.pixels,
        result.thumbnail.downsample,
        result.probability,
        result.cell_origin,
        result.cell_step,
        result.tissue,
        [np.asarray(les.polygon.exterior.coords) for les in result.lesions],
        mpp=g.mpp0,
        title=heatmap_title(
            result.slide_id, result.category, len(result.lesions), largest, result.threshold
        ),
        max_inches=max_inches,
    )


def heatmap_title(
    slide: str, category: str, lesions: int, largest_mm: float | None, threshold: float
) -> str:
    """ "slide: category" over the lesion count, the largest diameter and the threshold."""
    words = CATEGORY_WORDS.get(category, category)
    size = f", largest {largest_mm:.2f} mm" if largest_mm is not None else ""
    return (
        f"{slide}: {words}\n{lesions} lesion{'s' if lesions != 1 else ''}{size}; "
        f"threshold {threshold:.2f}; research use only, not a diagnosis"
    )


def slide_heatmap(
    thumbnail: np.ndarray,
    downsample: float,
    probability: np.ndarray,
    origin: tuple[float, float],
    step: float,
    tissue: np.ndarray,
    lesions: Sequence[np.ndarray],
    *,
    mpp: float,
    title: str,
    max_inches: float = 9.0,
) -> Figure:
    """The thumbnail (level-0 pixels per thumbnail pixel: ``downsample``), the map (cell (r, c)
    at level-0 ``origin + step * (c, r)``; NaN cells clear), the ``tissue`` mask's outline (a
    thumbnail-sized mask) and the ``lesions`` (level-0 outlines); axes in mm (``mpp``: microns
    per level-0 pixel), a scale bar, a legend and ``title``."""
    h, w = thumbnail.shape[:2]
    mm = mpp / 1000.0  # mm per level-0 pixel
    aspect = h / max(w, 1)
    # the axes are 0.77 of the width and 0.80 of the height: the slide fills them
    fig = Figure(figsize=(max_inches, min(max(3.5, max_inches * 0.77 * aspect / 0.80 + 0.3), 15.0)))
    ax = fig.add_axes((0.08, 0.07, 0.77, 0.80))  # fixed places: no layout pass (one draw)
    cax = fig.add_axes((0.88, 0.07, 0.025, 0.80))
    width_mm, height_mm = w * downsample * mm, h * downsample * mm
    ax.imshow(thumbnail, extent=(0.0, width_mm, height_mm, 0.0), interpolation="bilinear")
    norm = Normalize(0.0, 1.0)
    im: ScalarMappable = ScalarMappable(norm=norm, cmap="inferno")
    if probability.size:
        rows, cols = probability.shape
        ox, oy = origin[0] * mm, origin[1] * mm
        im = ax.imshow(np.ma.masked_invalid(probability),
                       extent=(ox, ox + cols * step * mm, oy + rows * step * mm, oy),
                       cmap="inferno", norm=norm, alpha=0.6, interpolation="nearest")  # fmt: skip
    if tissue.any():
        ys = (np.arange(h) + 0.5) * downsample * mm
        xs = (np.arange(w) + 0.5) * downsample * mm
        ax.contour(xs, ys, tissue.astype(float), levels=[0.5], colors=TISSUE_COLOUR,
                   linewidths=0.8)  # fmt: skip
    if len(lesions):  # one collection: a dense map can have thousands of lesions
        outlines = [np.asarray(o, dtype=float) * mm for o in lesions]
        ax.add_collection(LineCollection(outlines, colors=LESION_COLOUR, linewidths=1.0))
    ax.set_xlim(0, width_mm)
    ax.set_ylim(height_mm, 0)
    ax.set_xlabel("x (mm)", fontsize=8)
    ax.set_ylabel("y (mm)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    _legend(ax, len(lesions))
    _scale_bar(ax, width_mm, height_mm)
    cbar = fig.colorbar(im, cax=cax)
    cbar.set_label("probability of tumour", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    return fig


def _legend(ax: Axes, lesions: int) -> None:
    handles = [
        Line2D([], [], color=TISSUE_COLOUR, linewidth=1.2, label="tissue outline"),
        Line2D([], [], color=LESION_COLOUR, linewidth=1.5, label=f"lesion outlines ({lesions})"),
    ]
    ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.85)


def nice_length(span: float) -> float:
    """A round length (1, 2 or 5 times a power of ten) of about a fifth of ``span``."""
    want = max(span / 5.0, 1e-9)
    p = 10 ** math.floor(math.log10(want))
    return next(k * p for k in (5, 2, 1) if k * p <= want)


def _scale_bar(ax: Axes, width_mm: float, height_mm: float) -> None:
    """A bar of a round length in mm, bottom left, on a white box (readable on any tissue)."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = nice_length(width_mm)
    label = f"{length:g} mm" if length >= 0.1 else f"{length * 1000:g} µm"
    thick = min(width_mm, height_mm) / 120
    font = {"size": 8}
    bar = AnchoredSizeBar(ax.transData, length, label, "lower left", pad=0.4, sep=3,
                          frameon=True, size_vertical=thick, fontproperties=font)  # fmt: skip
    bar.patch.set_alpha(0.85)
    bar.set_gid("scale-bar")
    ax.add_artist(bar)
