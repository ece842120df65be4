"""slides.regions: polygons, areas and longest diameters of known shapes; QuPath GeoJSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from metastasis.slides.regions import feature_collection, find_lesions, max_feret

MPP0 = 0.25  # microns per level-0 pixel
STEP = 128.0  # level-0 pixels per cell (32 um)


def _map(shape_: tuple[int, int], cells: list[tuple[slice, slice]], p: float = 0.9) -> np.ndarray:
    m = np.full(shape_, 0.1, np.float32)
    for rs, cs in cells:
        m[rs, cs] = p
    return m


def test_a_square_block_of_cells_has_its_area_and_diagonal() -> None:
    prob = _map((10, 10), [(slice(2, 5), slice(3, 6))])
    prob[0, 0] = np.nan  # unclassified cells never count
    (les,) = find_lesions(prob, 0.5, (100.0, 50.0), STEP, MPP0)
    side_mm = 3 * STEP * MPP0 / 1000
    assert les.area_mm2 == pytest.approx(side_mm**2)
    assert les.diameter_mm == pytest.approx(side_mm * math.sqrt(2))
    assert les.tiles == 9 and les.mean_probability == pytest.approx(0.9)
    x0, y0, x1, y1 = les.polygon.bounds
    assert (x0, y0) == (100 + 3 * STEP, 50 + 2 * STEP) and (x1, y1) == (
        100 + 6 * STEP,
        50 + 5 * STEP,
    )


def test_a_ring_keeps_its_hole_and_lesions_are_sorted_by_diameter() -> None:
    prob = _map((12, 12), [(slice(1, 6), slice(1, 6)), (slice(8, 9), slice(8, 11))])
    prob[3, 3] = 0.2  # the hole
    big, small = find_lesions(prob, 0.5, (0.0, 0.0), STEP, MPP0)
    assert len(big.polygon.interiors) == 1
    cell_mm2 = (STEP * MPP0 / 1000) ** 2
    assert big.area_mm2 == pytest.approx(24 * cell_mm2)
    assert small.area_mm2 == pytest.approx(3 * cell_mm2)
    assert small.diameter_mm == pytest.approx(math.hypot(3, 1) * STEP * MPP0 / 1000)
    assert big.diameter_mm > small.diameter_mm


def test_cells_touching_at_a_corner_are_two_lesions_and_nothing_above_threshold_is_none() -> None:
    prob = _map((4, 4), [(slice(0, 1), slice(0, 1)), (slice(1, 2), slice(1, 2))])
    assert len(find_lesions(prob, 0.5, (0.0, 0.0), STEP, MPP0)) == 2
    assert find_lesions(np.full((3, 3), 0.2, np.float32), 0.5, (0, 0), STEP, MPP0) == []
    assert find_lesions(np.full((3, 3), np.nan, np.float32), 0.5, (0, 0), STEP, MPP0) == []


def test_max_feret_of_known_shapes() -> None:
    assert max_feret(shapely.box(0, 0, 3, 4)) == pytest.approx(5.0)
    assert max_feret(shapely.Point(0, 0).buffer(10, quad_segs=64)) == pytest.approx(20, rel=1e-3)
    l_shape = shapely.Polygon([(0, 0), (10, 0), (10, 1), (1, 1), (1, 10), (0, 10)])
    assert max_feret(l_shape) == pytest.approx(math.hypot(10, 10))


def test_geojson_is_a_feature_collection_that_loads_in_shapely() -> None:
    prob = _map((12, 12), [(slice(1, 6), slice(1, 6))])
    prob[3, 3] = 0.2
    lesions = find_lesions(prob, 0.5, (0.0, 0.0), STEP, MPP0)
    tiles = [((0.0, 0.0, STEP, STEP), 0.9)]
    fc = json.loads(json.dumps(feature_collection(lesions, tiles)))
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    lesion, tile = fc["features"]
    assert lesion["type"] == "Feature" and lesion["properties"]["objectType"] == "annotation"
    assert lesion["properties"]["classification"]["name"] == "Tumor"
    m = lesion["properties"]["measurements"]
    assert m["area_mm2"] == pytest.approx(lesions[0].area_mm2, rel=1e-5)
    assert set(m) >= {"area_mm2", "longest_diameter_mm", "mean_probability", "max_probability"}
    poly = shape(lesion["geometry"])
    assert poly.is_valid and len(poly.interiors) == 1
    assert poly.area == pytest.approx(lesions[0].polygon.area)
    assert shape(tile["geometry"]).area == pytest.approx(STEP * STEP)
    assert tile["properties"]["measurements"]["probability"] == 0.9
