"""The truth of one slide, as CAMELYON measured it, from its annotations (``annotations``).

* **Evaluation regions** (CAMELYON16's ``computeEvaluationMask``): each lesion, holes filled,
  grown by 37.5 um on every side (75 um, "the size of 5 tumour cells", across); regions that
  then touch are one; holes filled again. A detection inside a region is a hit on it.
* **ITC regions** (``computeITCList``): a region whose major axis (of the ellipse with its
  second moments, as ``skimage.measure.regionprops`` gives it) is under 275 um, i.e. an
  annotation under 200 um before growing.
* **Category** of the node: the largest lesion's longest diameter (maximum Feret, mm, as
  ``regions`` measures predicted lesions) by ``staging.slide_category``.

CAMELYON16 drew its evaluation mask at level 5 (7.8 um pixels); here the regions are exact
polygons, so hits on a region's very edge may differ from the official raster by a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from metastasis.slides import staging
from metastasis.slides.annotations import Annotations
from metastasis.slides.regions import max_feret

__all__ = ["GROW_UM", "ITC_AXIS_UM", "LesionTruth", "lesion_truth", "major_axis"]

GROW_UM = 37.5  # CAMELYON16: annotations grown by 75 um across (Threshold = 75 / (res * 2))
ITC_AXIS_UM = 275.0  # CAMELYON16: 200 um + the 75 um of growth


@dataclass
class LesionTruth:
    regions: list[Any]  # shapely Polygons (level-0 px): the evaluation regions
    itc: np.ndarray  # bool per region
    major_axis_um: np.ndarray  # per region
    largest_diameter_mm: float | None  # of the annotated lesions themselves
    category: str


def major_axis(polygon: Any) -> float:
    """The major axis length of ``polygon``'s ellipse of equal second moments (4 sqrt of the
    largest eigenvalue of its covariance), in its own units; holes subtracted."""
    rings = [np.asarray(polygon.exterior.coords)] + [
        np.asarray(r.coords) for r in polygon.interiors
    ]
    origin = rings[0].min(axis=0)  # moments about a near point: no cancellation
    total = np.zeros(6)  # area, sx, sy, sxx, syy, sxy (signed by orientation)
    for k, ring in enumerate(rings):
        m = _ring_moments(ring - origin)
        sign = 1.0 if k == 0 else -1.0
        total += sign * np.sign(m[0]) * m  # shell positive, holes negative, any orientation
    a, sx, sy, sxx, syy, sxy = total
    if a <= 0:
        return 0.0
    cx, cy = sx / a, sy / a
    cov = np.array([[sxx / a - cx * cx, sxy / a - cx * cy], [sxy / a - cx * cy, syy / a - cy * cy]])
    return 4.0 * math.sqrt(max(float(np.linalg.eigvalsh(cov)[-1]), 0.0))


def _ring_moments(xy: np.ndarray) -> np.ndarray:
    """Area and first and second moments of a closed ring (Green's theorem), signed."""
    x0, y0 = xy[:-1, 0], xy[:-1, 1]
    x1, y1 = xy[1:, 0], xy[1:, 1]
    c = x0 * y1 - x1 * y0
    area = c.sum() / 2
    sx = ((x0 + x1) * c).sum() / 6
    sy = ((y0 + y1) * c).sum() / 6
    sxx = ((x0 * x0 + x0 * x1 + x1 * x1) * c).sum() / 12
    syy = ((y0 * y0 + y0 * y1 + y1 * y1) * c).sum() / 12
    sxy = ((x0 * y1 + 2 * x0 * y0 + 2 * x1 * y1 + x1 * y0) * c).sum() / 24
    return np.array([area, sx, sy, sxx, syy, sxy])


def lesion_truth(
    annotations: Annotations | None,
    mpp: float,
    itc_mm: float = staging.ITC_MM,
    micro_mm: float = staging.MICRO_MM,
) -> LesionTruth:
    """The evaluation regions, their ITC flags and the node's category (``None``: a slide
    without annotations, negative)."""
    import shapely

    lesions = annotations.lesions if annotations is not None else []
    if not lesions:
        return LesionTruth([], np.zeros(0, bool), np.zeros(0), None, "negative")
    filled = [shapely.Polygon(les.exterior) for les in lesions]
    grown = shapely.union_all([f.buffer(GROW_UM / mpp) for f in filled])
    regions = [
        shapely.Polygon(g.exterior)
        for g in getattr(grown, "geoms", [grown])
        if g.geom_type == "Polygon" and g.area > 0
    ]
    regions.sort(key=lambda g: (g.bounds[1], g.bounds[0]))  # top to bottom: stable labels
    axes = np.array([major_axis(r) * mpp for r in regions])
    largest = max(max_feret(les) for les in lesions) * mpp / 1000.0
    category = staging.slide_category(largest, itc_mm, micro_mm)
    return LesionTruth(regions, axes < ITC_AXIS_UM, axes, largest, category)


def hit_labels(
    truth: LesionTruth, x: np.ndarray, y: np.ndarray, exclusion: Any | None
) -> np.ndarray:
    """The 1-based region each point (level-0 px) falls in; 0 outside every region, -1 outside
    every region but inside the excluded area (neither a TP nor a FP)."""
    import shapely

    labels = np.zeros(len(x), np.int64)
    for k, region in enumerate(truth.regions, start=1):
        inside = shapely.contains_xy(region, x, y) & (labels == 0)
        labels[inside] = k
    if exclusion is not None and len(x):
        labels[(labels == 0) & shapely.contains_xy(exclusion, x, y)] = -1
    return labels
