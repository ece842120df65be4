"""The heatmap figure: the probability map over the thumbnail, a colour bar, the tissue outline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from metastasis.slides.analyse import SlideResult


def heatmap_figure(result: SlideResult, max_inches: float = 9.0) -> Figure:
    """The thumbnail, the map (cells coloured by probability, unclassified cells clear), the
    tissue outline and the regions above the threshold; axes in level-0 pixels."""
    thumb = result.thumbnail
    h, w = thumb.pixels.shape[:2]
    ds = thumb.downsample
    aspect = h / max(w, 1)
    fig = Figure(figsize=(max_inches, max(2.5, min(max_inches * aspect, 14.0)) + 0.6))
    ax = fig.add_axes((0.07, 0.06, 0.78, 0.86))  # fixed places: no layout pass (one draw)
    cax = fig.add_axes((0.88, 0.06, 0.025, 0.86))
    extent = (0.0, w * ds, h * ds, 0.0)
    ax.imshow(thumb.pixels, extent=extent, interpolation="bilinear")
    g = result.geometry
    ox, oy = result.cell_origin
    step = result.cell_step
    prob = np.ma.masked_invalid(result.probability)
    norm = Normalize(0.0, 1.0)
    im: ScalarMappable = ScalarMappable(norm=norm, cmap="inferno")
    if prob.size:
        im = ax.imshow(
            prob,
            extent=(ox, ox + g.cols * step, oy + g.rows * step, oy),
            cmap="inferno",
            norm=norm,
            alpha=0.6,
            interpolation="nearest",
        )
    if result.tissue.any():
        ys = (np.arange(h) + 0.5) * ds
        xs = (np.arange(w) + 0.5) * ds
        ax.contour(xs, ys, result.tissue.astype(float), levels=[0.5], colors="#00a0ff",
                   linewidths=0.8)  # fmt: skip
    if result.lesions:  # one collection: a dense map can have thousands of lesions
        outlines = [np.asarray(les.polygon.exterior.coords) for les in result.lesions]
        ax.add_collection(LineCollection(outlines, colors="#00ff60", linewidths=1.0))
    ax.set_xlim(0, w * ds)
    ax.set_ylim(h * ds, 0)
    ax.set_title(
        f"{result.slide_id}: {result.category} ({len(result.lesions)} lesions, threshold "
        f"{result.threshold:.2f}); research use only",
        fontsize=9,
    )
    ax.tick_params(labelsize=7)
    cbar = fig.colorbar(im, cax=cax)
    cbar.set_label("probability of tumour", fontsize=8)
    return fig
