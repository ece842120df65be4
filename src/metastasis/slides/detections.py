"""Detections from a probability map, as CAMELYON16 scored them: each a point (level-0 pixels)
with a probability, at a local maximum of the map (optionally smoothed first).

``smooth_map`` blurs a map with NaN holes (not classified) by normalised convolution: a cell's
value is the Gaussian-weighted mean of the classified cells around it, and cells that were not
classified stay NaN. ``local_maxima`` keeps the cells at or above ``floor`` that are the
largest within ``radius`` cells (a plateau of equal maxima gives one detection, at the member
cell nearest its centre).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["detections", "local_maxima", "smooth_map"]


def smooth_map(probability: np.ndarray, sigma: float) -> np.ndarray:
    """``probability`` blurred with a Gaussian of ``sigma`` cells, NaN cells ignored (and kept
    NaN); ``sigma`` 0 returns it unchanged."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    p = np.asarray(probability, np.float64)
    if sigma == 0 or p.size == 0:
        return p
    from scipy import ndimage

    valid = np.isfinite(p)
    num = ndimage.gaussian_filter(np.where(valid, p, 0.0), sigma, mode="constant")
    den = ndimage.gaussian_filter(valid.astype(np.float64), sigma, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~valid] = np.nan
    return out


def local_maxima(probability: np.ndarray, floor: float, radius: int = 1) -> np.ndarray:
    """(row, col) of each local maximum at or above ``floor``: cells equal to the largest value
    within ``radius`` cells (a square window), one per plateau. Sorted by value, highest first."""
    from scipy import ndimage

    if radius < 1:
        raise ValueError(f"radius must be >= 1 cell, got {radius}")
    p = np.nan_to_num(np.asarray(probability, np.float64), nan=-np.inf)
    if p.size == 0:
        return np.zeros((0, 2), np.int64)
    peak = ndimage.maximum_filter(p, size=2 * radius + 1, mode="constant", cval=-np.inf)
    candidate = (p == peak) & (p >= floor)
    labels, n = ndimage.label(candidate, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros((0, 2), np.int64)
    points = []
    for k, where in enumerate(ndimage.find_objects(labels), start=1):
        rr, cc = np.nonzero(labels[where] == k)
        rr, cc = rr + where[0].start, cc + where[1].start
        centre = np.argmin((rr - rr.mean()) ** 2 + (cc - cc.mean()) ** 2)
        points.append((int(rr[centre]), int(cc[centre])))
    out = np.asarray(points, np.int64)
    order = np.argsort(-p[out[:, 0], out[:, 1]], kind="stable")
    return out[order]


def detections(
    probability: np.ndarray, meta: dict[str, Any], *, floor: float = 0.1, radius: int = 1
) -> pd.DataFrame:
    """A slide's detections in its map (smoothed or not: ``smooth_map``): columns ``x``, ``y``
    (level-0 pixels of the cell's centre), ``probability``, ``row``, ``col``, highest first.
    ``meta``: the map's ``probability.json`` (``cell_origin_level0``, ``step_level0``)."""
    p = np.asarray(probability, np.float64)
    cells = local_maxima(p, floor, radius)
    ox, oy = (float(v) for v in meta["cell_origin_level0"])
    step = float(meta["step_level0"])
    rows, cols = cells[:, 0], cells[:, 1]
    return pd.DataFrame(
        {
            "x": ox + (cols + 0.5) * step,
            "y": oy + (rows + 0.5) * step,
            "probability": p[rows, cols],
            "row": rows,
            "col": cols,
        }
    )
