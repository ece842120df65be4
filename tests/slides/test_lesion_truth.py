"""slides.lesion_truth and slides.detections: evaluation regions, ITC flags and hits checked against
CAMELYON16's raster procedure (computeEvaluationMask, computeITCList, the hit lookup) transcribed
on a level-5 mask; local maxima and NaN-aware smoothing on known maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from scipy import ndimage
from skimage import draw, measure

from metastasis.slides.annotations import Annotations
from metastasis.slides.detections import detections, local_maxima, smooth_map
from metastasis.slides.lesion_truth import hit_labels, lesion_truth, major_axis

MPP = 0.243  # CAMELYON16's level 0
LEVEL = 5


def official_regions(mask: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """computeEvaluationMask and computeITCList of Evaluation_FROC.py on a level-5 mask."""
    distance = ndimage.distance_transform_edt(255 - mask)
    binary = distance < 75 / (MPP * 2**LEVEL * 2)
    labels = measure.label(ndimage.binary_fill_holes(binary), connectivity=2)
    itc = [p.label for p in measure.regionprops(labels)
           if p.axis_major_length < 275 / (MPP * 2**LEVEL)]  # fmt: skip
    return labels, itc


def test_regions_itc_and_hits_agree_with_the_official_raster_procedure() -> None:
    um = 1 / MPP  # level-0 px per micron
    lesions = [
        shapely.Point(4000 * um, 3000 * um).buffer(1500 * um),  # macro
        shapely.box(1000 * um, 8000 * um, 1500 * um, 8500 * um),  # micro, 0.5 mm
        shapely.Point(7000 * um, 8000 * um).buffer(50 * um),  # ITC, 0.1 mm
        shapely.box(9000 * um, 1000 * um, 9300 * um, 1300 * um),  # two squares 40 um apart:
        shapely.box(9340 * um, 1000 * um, 9640 * um, 1300 * um),  # one region once grown
        shapely.Point(3000 * um, 9000 * um).buffer(400 * um).difference(
            shapely.Point(3000 * um, 9000 * um).buffer(250 * um)),  # a ring: its hole filled
    ]  # fmt: skip
    truth = lesion_truth(Annotations(Path("x.xml"), lesions), MPP)
    shape = (int(11000 * um) >> LEVEL, int(11000 * um) >> LEVEL)
    mask = np.zeros(shape, np.uint8)
    for les in lesions:  # rasterised at level 5 as ASAP's mask would be (cell centres)
        for poly in getattr(les, "geoms", [les]):
            rings = [poly.exterior, *poly.interiors]
            for k, ring in enumerate(rings):
                xy = np.asarray(ring.coords) / 2**LEVEL - 0.5
                rr, cc = draw.polygon(xy[:, 1], xy[:, 0], shape)
                mask[rr, cc] = 0 if k else 255
    labels, itc = official_regions(mask)
    assert len(truth.regions) == labels.max() == 5
    assert int(truth.itc.sum()) == len(itc) == 1
    points = [(4000, 3000), (1250, 8250), (7000, 8000), (9320, 1150), (3000, 9000),
              (3000, 9430), (6000, 6000), (9700, 9700)]  # fmt: skip
    x = np.array([p[0] for p in points]) * um
    y = np.array([p[1] for p in points]) * um
    ours = hit_labels(truth, x, y, None)
    theirs = labels[(y // 2**LEVEL).astype(int), (x // 2**LEVEL).astype(int)]
    assert ((ours > 0) == (theirs > 0)).all()  # the same points hit, the same missed
    same_region = {int(t): int(o) for o, t in zip(ours, theirs) if t}
    assert len(same_region) == len(set(same_region.values())) == 5  # one-to-one
    assert truth.itc[same_region[int(itc[0])] - 1]  # the same region is the ITC one
    assert truth.category == "macro" and truth.largest_diameter_mm == pytest.approx(3.0, 1e-3)


def test_major_axis_of_known_shapes() -> None:
    assert major_axis(shapely.Point(0, 0).buffer(10, quad_segs=256)) == pytest.approx(20, 1e-4)
    assert major_axis(shapely.box(0, 0, 12, 12)) == pytest.approx(48 / 12**0.5)


def test_no_annotations_is_negative_and_exclusions_are_ignored_hits() -> None:
    empty = lesion_truth(None, MPP)
    assert empty.category == "negative" and empty.regions == []
    exclusion = shapely.box(0, 0, 10, 10)
    hits = hit_labels(empty, np.array([5.0, 50.0]), np.array([5.0, 50.0]), exclusion)
    assert hits.tolist() == [-1, 0]


def test_local_maxima_one_per_plateau_and_within_the_radius() -> None:
    p = np.zeros((9, 9))
    p[1, 1] = 0.9
    p[1, 2] = 0.8  # within the radius of a higher peak: not a detection
    p[6, 6] = p[6, 7] = 0.7  # a plateau: one detection
    p[4, 8] = 0.05  # below the floor
    p[0, 8] = np.nan
    assert local_maxima(p, 0.1, 1).tolist() == [[1, 1], [6, 6]]
    meta = {"cell_origin_level0": [10.0, 20.0], "step_level0": 100.0}
    d = detections(p, meta, floor=0.1, radius=1)
    assert d[["x", "y"]].to_numpy().tolist() == [[160.0, 170.0], [660.0, 670.0]]
    assert d["probability"].tolist() == [0.9, 0.7]


def test_smoothing_ignores_unclassified_cells_and_keeps_them_unclassified() -> None:
    p = np.full((5, 5), 0.5)
    p[2, 2] = np.nan
    s = smooth_map(p, 1.0)
    assert np.isnan(s[2, 2]) and np.allclose(s[np.isfinite(s)], 0.5)
    assert smooth_map(p, 0) is not None and np.isnan(smooth_map(p, 0)[2, 2])
