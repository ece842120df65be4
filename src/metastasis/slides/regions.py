"""Tumour regions: the lesions' cells merged into polygons, measured, as GeoJSON.

Each classified tile owns its *cell* (the ``stride x stride`` square around its centre, see
``tiling``); the cells of a lesion (``postprocess``: smoothing, hysteresis thresholds, minimum
size; without it, every cell at or above the threshold) are merged with shapely into polygons
(holes kept; cells touching only at a corner stay separate lesions). Coordinates are level-0 pixels,
as QuPath expects in a GeoJSON import. Each region carries measurements: area (mm^2), longest
diameter (mm: the maximum Feret diameter, the largest distance between two of its points) and
the mean and largest probability of its tiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from metastasis.slides.postprocess import PostProcess, lesion_mask


@dataclass
class Lesion:
    polygon: Any  # shapely Polygon, level-0 pixels
    area_mm2: float
    diameter_mm: float
    mean_probability: float
    max_probability: float
    tiles: int


def max_feret(polygon: Any) -> float:
    """The largest distance between two points of ``polygon`` (its convex hull's vertices)."""
    hull = polygon.convex_hull
    coords = np.asarray(hull.exterior.coords if hasattr(hull, "exterior") else hull.coords)
    if len(coords) < 2:
        return 0.0
    d = coords[:, None, :] - coords[None, :, :]
    return float(np.sqrt((d**2).sum(-1)).max())


def cell_boxes(
    positive: np.ndarray, origin: tuple[float, float], step: float
) -> list[tuple[float, float, float, float]]:
    """Level-0 boxes of the True cells of a grid (cell (r, c) starts at origin + step * (c, r))."""
    rows, cols = np.nonzero(positive)
    x0, y0 = origin
    return [
        (x0 + c * step, y0 + r * step, x0 + (c + 1) * step, y0 + (r + 1) * step)
        for r, c in zip(rows.tolist(), cols.tolist())
    ]


def find_lesions(
    probability: np.ndarray,
    threshold: float,
    origin: tuple[float, float],
    step: float,
    mpp0: float,
    post: PostProcess | None = None,
) -> list[Lesion]:
    """Lesions of a probability map (NaN = not classified), largest diameter first.

    ``origin``: level-0 (x, y) of cell (0, 0)'s top-left corner; ``step``: cell side in level-0
    pixels; ``mpp0``: microns per level-0 pixel; ``post``: the post-processing (None: every
    connected set of cells at or above ``threshold``, ``PostProcess.raw``). A lesion's mean and
    largest probability are those of its tiles' raw probabilities."""
    import shapely
    from scipy import ndimage

    positive = lesion_mask(probability, post or PostProcess.raw(threshold))
    if not positive.any():
        return []
    labels, _ = ndimage.label(positive)  # 4-connected: corner contacts stay apart
    lesions = []
    um2_to_mm2 = (mpp0 / 1000.0) ** 2
    for k, where in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[where] == k
        r0, c0 = where[0].start, where[1].start
        sub_origin = (origin[0] + c0 * step, origin[1] + r0 * step)
        boxes = [shapely.box(*b) for b in cell_boxes(part, sub_origin, step)]
        polygon = shapely.coverage_union_all(boxes) if len(boxes) > 1 else boxes[0]
        polygon = shapely.make_valid(polygon)
        if polygon.geom_type != "Polygon":  # a coverage union of 4-connected cells is one
            polygon = max(getattr(polygon, "geoms", [polygon]), key=lambda g: g.area)
        probs = probability[where][part]
        lesions.append(
            Lesion(
                polygon=polygon,
                area_mm2=float(polygon.area) * um2_to_mm2,
                diameter_mm=max_feret(polygon) * mpp0 / 1000.0,
                mean_probability=float(np.nanmean(probs)),
                max_probability=float(np.nanmax(probs)),
                tiles=int(part.sum()),
            )
        )
    lesions.sort(key=lambda les: les.diameter_mm, reverse=True)
    return lesions


def _ring(coords: Any) -> list[list[float]]:
    return [[round(float(x), 2), round(float(y), 2)] for x, y in coords]


def polygon_geometry(polygon: Any) -> dict[str, Any]:
    """GeoJSON geometry of a shapely Polygon (exterior counter-clockwise, holes kept)."""
    import shapely

    polygon = shapely.geometry.polygon.orient(polygon, sign=1.0)
    rings = [_ring(polygon.exterior.coords)] + [_ring(i.coords) for i in polygon.interiors]
    return {"type": "Polygon", "coordinates": rings}


def feature_collection(
    lesions: list[Lesion],
    tiles: list[tuple[tuple[float, float, float, float], float]] | None = None,
) -> dict[str, Any]:
    """A FeatureCollection as QuPath imports it: each lesion an annotation classified as
    Tumor with its measurements; ``tiles`` (cell box, probability) adds one detection each."""
    features: list[dict[str, Any]] = []
    for i, les in enumerate(lesions, start=1):
        features.append(
            {
                "type": "Feature",
                "id": f"lesion-{i}",
                "geometry": polygon_geometry(les.polygon),
                "properties": {
                    "objectType": "annotation",
                    "name": f"lesion {i}",
                    "classification": {"name": "Tumor", "color": [200, 0, 0]},
                    "isLocked": False,
                    "measurements": {
                        "area_mm2": round(les.area_mm2, 6),
                        "longest_diameter_mm": round(les.diameter_mm, 6),
                        "mean_probability": round(les.mean_probability, 6),
                        "max_probability": round(les.max_probability, 6),
                        "tiles": les.tiles,
                    },
                },
            }
        )
    for j, (box, prob) in enumerate(tiles or []):
        x0, y0, x1, y1 = box
        features.append(
            {
                "type": "Feature",
                "id": f"tile-{j}",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [_ring([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])],
                },
                "properties": {
                    "objectType": "tile",
                    "measurements": {
                        "probability": round(prob, 6) if math.isfinite(prob) else None
                    },
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}
