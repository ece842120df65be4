"""slides.annotations: ASAP/CAMELYON16 XML, QuPath GeoJSON and mask images written at test time
read into lesions and exclusions; broken and hostile files refused in one line naming the file."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metastasis.errors import DataError
from metastasis.slides.annotations import find_annotation, read_annotations


def asap_xml(polygons: list[tuple[str, list[tuple[float, float]]]]) -> str:
    """An ASAP annotation file: (group, points) per polygon."""
    parts = []
    for i, (group, points) in enumerate(polygons):
        coords = "".join(
            f'<Coordinate Order="{k}" X="{x}" Y="{y}" />' for k, (x, y) in enumerate(points)
        )
        head = f'<Annotation Name="Annotation {i}" Type="Polygon" PartOfGroup="{group}">'
        parts.append(f"{head}<Coordinates>{coords}</Coordinates></Annotation>")
    groups = '<Group Name="_0" PartOfGroup="None" Color="#ff0000"><Attributes /></Group>'
    body = f"<Annotations>{''.join(parts)}</Annotations>"
    tail = f"<AnnotationGroups>{groups}</AnnotationGroups>"
    return f'<?xml version="1.0"?><ASAP_Annotations>{body}{tail}</ASAP_Annotations>'


def square(x: float, y: float, side: float) -> list[tuple[float, float]]:
    return [(x, y), (x + side, y), (x + side, y + side), (x, y + side)]


def test_asap_groups_overlaps_merge_and_exclusions_cut_holes(tmp_path: Path) -> None:
    xml = asap_xml([
        ("_0", square(0, 0, 100)),
        ("_1", square(50, 0, 100)),  # overlaps the first: one lesion 150 x 100
        ("_2", square(10, 10, 20)),  # non-tumour inside it: a hole
        ("_0", square(1000, 1000, 10)),
        ("Exclusion", square(5000, 5000, 50)),
        ("None", square(3000, 3000, 5)),  # ASAP's "no group": tumour, noted
    ])  # fmt: skip
    path = tmp_path / "tumor_001.xml"
    path.write_text(xml)
    a = read_annotations(path)
    assert len(a.lesions) == 3 and "1 annotations in no group" in a.notes[0]
    big = a.lesions[0]
    assert big.area == pytest.approx(150 * 100 - 400) and len(big.interiors) == 1
    assert a.exclusion.area == pytest.approx(400 + 2500)
    assert find_annotation(tmp_path, "tumor_001") == path
    assert find_annotation(tmp_path, "TUMOR_001") == path  # case ignored
    assert find_annotation(tmp_path, "normal_001") is None


def test_geojson_qupath_classes_multipolygons_holes_and_points(tmp_path: Path) -> None:
    ring = [[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]
    hole = [[40, 40], [60, 40], [60, 60], [40, 60], [40, 40]]
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring, hole]},
         "properties": {"classification": {"name": "Tumor", "colorRGB": -3670016}}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [
            [[[500, 0], [520, 0], [520, 20], [500, 0]]],
            [[[900, 900], [950, 900], [950, 950], [900, 950], [900, 900]]]]},
         "properties": {"classification": {"name": "Metastasis"}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            [[2000, 0], [2100, 0], [2100, 100], [2000, 100], [2000, 0]]]},
         "properties": {"classification": {"name": "Ignore*"}}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]},
         "properties": {}},
    ]  # fmt: skip
    path = tmp_path / "s.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    a = read_annotations(path)
    assert len(a.lesions) == 3 and a.lesions[0].area == pytest.approx(10000 - 400)
    assert a.exclusion.area == pytest.approx(10000)
    assert any("points or lines" in n for n in a.notes)
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))  # no class: tumour
    assert read_annotations(bare).lesions[0].area == pytest.approx(10000)


def test_self_intersecting_polygons_are_made_valid_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "bowtie.xml"
    path.write_text(asap_xml([("_0", [(0, 0), (100, 100), (100, 0), (0, 100)])]))
    a = read_annotations(path)
    assert "1 self-intersecting" in a.notes[0]
    assert sum(p.area for p in a.lesions) == pytest.approx(5000)


def test_mask_image_at_a_downsample(tmp_path: Path) -> None:
    mask = np.zeros((20, 30), np.uint8)
    mask[2:6, 3:8] = 255  # 4 x 5 pixels
    mask[10:12, 20:22] = 1
    mask[9, 19] = 1  # touches the second blob at a corner only: its own polygon
    mask[4, 4] = 0  # a hole
    path = tmp_path / "m_mask.png"
    Image.fromarray(mask).save(path)
    a = read_annotations(path, downsample=16)
    assert len(a.lesions) == 3
    assert a.lesions[0].area == pytest.approx((20 - 1) * 256)
    assert a.lesions[0].bounds == (48.0, 32.0, 128.0, 96.0) and len(a.lesions[0].interiors) == 1
    assert a.lesions[1].bounds == (320.0, 160.0, 352.0, 192.0)
    with pytest.raises(DataError, match="downsample"):
        read_annotations(path)


BAD = {
    "broken.xml": ("<ASAP_Annotations><Annotations>", "not valid XML"),
    "entities.xml": ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
                     "<r>&b;</r>", "DTD or entities"),
    "empty.xml": ("<ASAP_Annotations><Annotations/></ASAP_Annotations>", "no Annotation"),
    "nocoords.xml": ('<ASAP_Annotations><Annotations><Annotation PartOfGroup="_0">'
                     "<Coordinates/></Annotation></Annotations></ASAP_Annotations>",
                     "no coordinates"),
    "nan.xml": (asap_xml([("_0", [(0, 0), ("nan", 1), (1, 1)])]), "not a finite number"),
    "text.xml": (asap_xml([("_0", [(0, 0), ("x", 1), (1, 1)])]), "not a number"),
    "absurd.xml": (asap_xml([("_0", square(0, 0, 1e9))]), "absurd"),
    "group.xml": (asap_xml([("stroma", square(0, 0, 10))]), "unknown annotation class"),
    "bad.geojson": ("{not json", "not valid JSON"),
    "nogeo.geojson": ('{"type": "FeatureCollection", "features": [{"type": "Feature"}]}',
                      "no geometry"),
    "none.geojson": ('{"type": "FeatureCollection", "features": []}', "no polygons"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BAD))
def test_broken_and_hostile_files_are_one_line_errors_naming_the_file(
    tmp_path: Path, name: str
) -> None:
    text, words = BAD[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=words) as err:
        read_annotations(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_file_too_large_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.xml"
    path.write_text(asap_xml([("_0", square(0, 0, 10))]))
    module = importlib.import_module("metastasis.slides.annotations")
    monkeypatch.setattr(module, "MAX_BYTES", 100)
    with pytest.raises(DataError, match="too large"):
        read_annotations(path)
    other = tmp_path / "x.txt"
    other.write_text("x")
    with pytest.raises(DataError, match="not an annotation file"):
        read_annotations(other)
