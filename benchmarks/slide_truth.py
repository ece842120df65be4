"""Scoring a slide's tile probabilities against a mosaic's truth (``make_mosaic_slide.py``).

Pure functions over arrays: tiles (level-0 x, y of their top-left corners, probabilities) become
a predicted mask on a grid of *cells* (the ``stride`` square around each tile's centre, which
is PCam's label region at stride 32 and the whole tile at stride 96), compared with the true
tumour mask brought to the same grid: Dice, and for each true blob the predicted connected
region over it and that region's longest diameter (corner to corner of its cells, in mm).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError


def load_truth(path: str | Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The truth JSON, the tumour and the tissue masks (one pixel per 96 px cell)."""
    path = Path(path)
    truth = json.loads(path.read_text())
    tumour = np.asarray(Image.open(path.parent / truth["masks"]["tumour"])) > 0
    tissue = np.asarray(Image.open(path.parent / truth["masks"]["tissue"])) > 0
    return truth, tumour, tissue


def tissue_coverage(x: np.ndarray, y: np.ndarray, tissue96: np.ndarray, cell: int) -> dict:
    """How many of the mosaic's tissue cells have a tile on them (stride-96 tiles only), and how
    many tiles lie on glass."""
    col = np.rint(np.asarray(x, np.float64) / cell).astype(np.int64)
    row = np.rint(np.asarray(y, np.float64) / cell).astype(np.int64)
    ok = (row >= 0) & (row < tissue96.shape[0]) & (col >= 0) & (col < tissue96.shape[1])
    on_tissue = tissue96[row[ok], col[ok]]
    return {
        "tissue_cells": int(tissue96.sum()),
        "tissue_cells_classified": int(on_tissue.sum()),
        "tissue_recall": float(on_tissue.sum() / max(1, tissue96.sum())),
        "glass_tiles_classified": int((~on_tissue).sum()),
    }


def truth_on_grid(mask96: np.ndarray, cell: int, stride: int) -> np.ndarray:
    """The 96 px tumour mask on the grid of ``stride`` px cells whose first cell starts at
    ``(96 - stride) / 2`` (the centre square of the first tile)."""
    if stride == cell:
        return mask96
    if cell % stride:
        raise ValueError(f"stride {stride} does not divide the mosaic's {cell} px cells")
    k = cell // stride
    fine = np.kron(mask96, np.ones((k, k), bool))
    shift = (cell - stride) // 2 // stride  # cells of the tile grid start this far in
    return fine[shift:, shift:]


def predicted_grid(
    x: np.ndarray, y: np.ndarray, prob: np.ndarray, threshold: float, stride: int,
    shape: tuple[int, int],
) -> np.ndarray:  # fmt: skip
    """Tiles at or above ``threshold`` on the grid of cells (tile top-left / stride)."""
    pred = np.zeros(shape, bool)
    col = np.rint(np.asarray(x, np.float64) / stride).astype(np.int64)
    row = np.rint(np.asarray(y, np.float64) / stride).astype(np.int64)
    keep = (row >= 0) & (row < shape[0]) & (col >= 0) & (col < shape[1])
    pred[row[keep], col[keep]] = np.asarray(prob)[keep] >= threshold
    return pred


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    both = pred.sum() + truth.sum()
    return float(2 * (pred & truth).sum() / both) if both else 1.0


def longest_diameter_px(cells: np.ndarray, cell_px: float, origin_px: float = 0.0) -> float:
    """Longest distance between two points of the union of the cell squares, level-0 px."""
    rr, cc = np.nonzero(cells)
    if rr.size == 0:
        return 0.0
    pts = np.concatenate(
        [np.stack([cc + dx, rr + dy], 1) for dx in (0, 1) for dy in (0, 1)]
    ).astype(np.float64)
    pts = np.unique(pts, axis=0) * cell_px + origin_px
    with contextlib.suppress(QhullError, ValueError):  # a line of cells: keep all points
        pts = pts[ConvexHull(pts).vertices]
    d = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    return math.sqrt(float(d.max()))


def blob_measurements(
    pred: np.ndarray, truth: dict[str, Any], stride: int, mpp: float
) -> list[dict[str, Any]]:
    """For each true blob: the largest predicted region (8-connected) that overlaps its cells,
    and that region's longest diameter against the true one."""
    cell = truth["cell_px"]
    origin = (cell - stride) / 2 if stride != cell else 0.0
    labels, _ = ndimage.label(pred, structure=np.ones((3, 3)))
    rows, cols = np.indices(pred.shape)
    cx = origin + (cols + 0.5) * stride
    cy = origin + (rows + 0.5) * stride
    out = []
    for blob in truth["blobs"]:
        inside = _blob_contains(blob, cx, cy, truth["mpp"])
        hits = labels[inside & pred]
        row: dict[str, Any] = {
            "name": blob["name"],
            "true_mm": blob["true_longest_diameter_mm"],
            "true_cells_mm": blob["cells_longest_diameter_mm"],
            "found": bool(hits.size),
        }
        if hits.size:
            region = labels == np.bincount(hits).argmax()
            row["measured_mm"] = longest_diameter_px(region, stride, origin) * mpp / 1000
            row["region_cells"] = int(region.sum())
            row["recall_in_blob"] = float((pred & inside).sum() / max(1, inside.sum()))
        out.append(row)
    return out


def false_regions(pred: np.ndarray, truth_grid: np.ndarray, stride: int, mpp: float) -> dict:
    """Predicted regions that touch no true tumour cell: how many, and the largest's diameter."""
    labels, n = ndimage.label(pred, structure=np.ones((3, 3)))
    touching = set(np.unique(labels[truth_grid & pred]).tolist())
    sizes = []
    for i in range(1, n + 1):
        if i not in touching:
            sizes.append(longest_diameter_px(labels == i, stride) * mpp / 1000)
    return {"count": len(sizes), "largest_mm": max(sizes, default=0.0)}


def _blob_contains(blob: dict[str, Any], x: np.ndarray, y: np.ndarray, mpp: float) -> np.ndarray:
    cx, cy = blob["centre_px"]
    a = blob["true_longest_diameter_mm"] * 1000 / mpp / 2
    b = blob["true_minor_diameter_mm"] * 1000 / mpp / 2
    t = math.radians(blob.get("angle_deg", 0.0))
    dx, dy = x - cx, y - cy
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0
