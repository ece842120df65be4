"""Lesion annotations in: CAMELYON16/ASAP XML, QuPath/GeoJSON and binary mask images, read into
shapely geometries in level-0 pixel coordinates (``read_annotations``).

* **ASAP XML** (CAMELYON16/17): ``Annotation`` elements with ``Coordinates/Coordinate X= Y=``;
  the groups ``_0`` and ``_1`` (and groups named like tumour or metastases, and annotations in
  no group) are tumour, ``_2`` and ``Exclusion`` (or ``Ignore``) are excluded regions. Parsed
  with ``defusedxml`` (no DTDs, no entities), at most ``MAX_BYTES``.
* **GeoJSON** (QuPath's export): a FeatureCollection, a Feature, a list of Features or a bare
  geometry; Polygons and MultiPolygons with their holes; the class from
  ``properties.classification.name`` (Tumor / Tumour / Metastasis... against Exclusion /
  Ignore...); a feature without a class is tumour.
* **A mask image** (PNG, TIFF): non-zero pixels are tumour, each mask pixel covering
  ``downsample`` level-0 pixels on a side.

The tumour polygons are merged (overlapping annotations are one lesion) and the excluded
regions cut out of them, as CAMELYON16's masks do with ``_2`` inside ``_0``; ``lesions`` are
the resulting polygons, largest first, holes kept. Self-intersecting polygons are made valid
(``shapely.make_valid``) and counted in ``notes``; points and lines are left out, counted. A
broken or hostile file (invalid XML, entities, no coordinates, non-numbers, absurd sizes) is
one ``DataError`` naming the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.errors import DataError, first_line
from metastasis.io import regular_file

__all__ = ["ANNOTATION_SUFFIXES", "Annotations", "find_annotation", "read_annotations"]

MAX_BYTES = 256 * 2**20  # an XML or GeoJSON file larger than this is refused
MAX_VERTICES = 5_000_000  # all polygons of one file together
MAX_COORD = 1e7  # level-0 pixels: 10 million pixels is 2.4 m at 0.243 um/px
MAX_MASK_PIXELS = 200_000_000
XML_SUFFIXES = (".xml",)
GEOJSON_SUFFIXES = (".geojson", ".json")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
ANNOTATION_SUFFIXES = XML_SUFFIXES + GEOJSON_SUFFIXES + MASK_SUFFIXES
TUMOUR_WORDS = ("tumor", "tumour", "metasta", "cancer", "carcinoma", "positive")
EXCLUDED_WORDS = ("exclu", "ignore")
TUMOUR_GROUPS = ("_0", "_1")
EXCLUDED_GROUPS = ("_2",)


@dataclass
class Annotations:
    """The lesions of one slide (shapely Polygons, level-0 pixels, largest first) and the
    excluded region (a shapely geometry, or None)."""

    source: Path
    lesions: list[Any]
    exclusion: Any | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def tumour(self) -> Any:
        """All lesions as one geometry (empty when there is none)."""
        import shapely

        return shapely.union_all(self.lesions) if self.lesions else shapely.Polygon()


def read_annotations(path: str | Path, *, downsample: float | None = None) -> Annotations:
    """The annotations of one slide from an ASAP XML, a GeoJSON or a mask image file.

    ``downsample``: level-0 pixels per mask pixel, needed for a mask image (a mask of level
    ``k`` of a pyramid halving at each level has ``2**k``)."""
    p = Path(path)
    regular_file(p)
    suffix = p.suffix.lower()
    if suffix in XML_SUFFIXES:
        tumour, excluded, notes = _read_asap(p)
    elif suffix in GEOJSON_SUFFIXES:
        tumour, excluded, notes = _read_geojson(p)
    elif suffix in MASK_SUFFIXES:
        if downsample is None or not (math.isfinite(downsample) and downsample > 0):
            raise DataError(f"{p}: a mask image needs its downsample (level-0 px per mask px), "
                            f"got {downsample!r}")  # fmt: skip
        tumour, excluded, notes = _read_mask(p, float(downsample)), [], []
    else:
        known = ", ".join(ANNOTATION_SUFFIXES)
        raise DataError(f"{p}: not an annotation file (known suffixes: {known})")
    return _assemble(p, tumour, excluded, notes)


def find_annotation(folder: Path, slide: str) -> Path | None:
    """The annotation file of ``slide`` in ``folder`` (``<slide>.xml``, ``.geojson``, ...:
    the stem matched exactly, else ignoring case), or None: a slide without one is negative."""
    for suffix in XML_SUFFIXES + GEOJSON_SUFFIXES:
        candidate = folder / f"{slide}{suffix}"
        if candidate.exists():
            return candidate
    wanted = slide.casefold()
    for entry in sorted(folder.iterdir()):
        named = entry.suffix.lower() in XML_SUFFIXES + GEOJSON_SUFFIXES
        if named and entry.stem.casefold() == wanted:
            return entry
    return None


# ---------------------------------------------------------------------------- assembling


def _assemble(p: Path, tumour: list[Any], excluded: list[Any], notes: list[str]) -> Annotations:
    """Valid polygons, merged, with the excluded regions cut out: the lesions."""
    import shapely

    fixed = 0
    parts: dict[str, list[Any]] = {"tumour": [], "excluded": []}
    for kind, geoms in (("tumour", tumour), ("excluded", excluded)):
        for g in geoms:
            if not g.is_valid:
                fixed += 1
                g = shapely.make_valid(g)
            parts[kind] += [q for q in _polygons(g) if q.area > 0]
    if fixed:
        notes.append(f"{fixed} self-intersecting or otherwise invalid polygons made valid")
    exclusion = shapely.union_all(parts["excluded"]) if parts["excluded"] else None
    lesions: list[Any] = []
    if parts["tumour"]:
        merged = shapely.union_all(parts["tumour"])
        if exclusion is not None:
            merged = merged.difference(exclusion)
        lesions = sorted((q for q in _polygons(merged) if q.area > 0), key=lambda q: -q.area)
    return Annotations(p, lesions, exclusion, notes)


def _polygons(geom: Any) -> Iterator[Any]:
    """The Polygons inside any shapely geometry (collections unpacked, lines and points left)."""
    if geom.geom_type == "Polygon":
        yield geom
    elif hasattr(geom, "geoms"):
        for g in geom.geoms:
            yield from _polygons(g)


def _ring(p: Path, coords: Any, what: str) -> np.ndarray:
    """A ring's coordinates as a finite (n, 2) float array within ``MAX_COORD``."""
    try:
        xy = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{p}: {what}: coordinates are not pairs of numbers") from None
    if xy.ndim != 2 or xy.shape[1] < 2 or len(xy) == 0:
        raise DataError(f"{p}: {what}: coordinates are not pairs of numbers")
    xy = xy[:, :2]
    if not np.isfinite(xy).all():
        raise DataError(f"{p}: {what}: a coordinate is not a finite number")
    if np.abs(xy).max() > MAX_COORD:
        raise DataError(f"{p}: {what}: a coordinate of {np.abs(xy).max():.3g} px is absurd "
                        f"(more than {MAX_COORD:.0e})")  # fmt: skip
    return xy


def _read_bounded(p: Path) -> bytes:
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise DataError(f"{p}: {size / 2**20:.0f} MiB is too large for an annotation file "
                        f"(at most {MAX_BYTES // 2**20} MiB)")  # fmt: skip
    try:
        with open(p, "rb") as fh:
            return fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{p}: cannot read: {first_line(exc)}") from None


def _kind(p: Path, name: str, groups: tuple[str, ...] = ()) -> str:
    """``tumour`` or ``excluded`` for a group or class name; anything else is refused."""
    text = name.strip().casefold()
    if text in TUMOUR_GROUPS or any(w in text for w in TUMOUR_WORDS):
        return "tumour"
    if text in EXCLUDED_GROUPS or any(w in text for w in EXCLUDED_WORDS):
        return "excluded"
    raise DataError(f"{p}: unknown annotation class {name!r} (tumour: _0, _1, Tumor, "
                    "Metastases...; excluded: _2, Exclusion, Ignore)")  # fmt: skip


# ---------------------------------------------------------------------------- ASAP XML


def _read_asap(p: Path) -> tuple[list[Any], list[Any], list[str]]:
    import shapely
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, fromstring

    data = _read_bounded(p)
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise DataError(f"{p}: refused: the XML declares a DTD or entities ({type(exc).__name__})"
                        ) from None  # fmt: skip
    except (ParseError, ValueError) as exc:
        raise DataError(f"{p}: not valid XML ({first_line(exc)})") from None
    found = [a for a in root.iter() if _local(a.tag) == "Annotation"]
    if not found:
        raise DataError(f"{p}: no Annotation elements (not an ASAP/CAMELYON annotation file)")
    out: dict[str, list[Any]] = {"tumour": [], "excluded": []}
    skipped, vertices, ungrouped = 0, 0, 0
    for i, element in enumerate(found):
        group = (element.get("PartOfGroup") or "").strip()
        ungrouped += group.casefold() in ("", "none")
        kind = "tumour" if group.casefold() in ("", "none") else _kind(p, group)
        points = [(c.get("X"), c.get("Y")) for c in element.iter() if _local(c.tag) == "Coordinate"]
        vertices += len(points)
        if vertices > MAX_VERTICES:
            raise DataError(f"{p}: more than {MAX_VERTICES:,} coordinates; refusing to read it")
        if any(x is None or y is None for x, y in points):
            raise DataError(f"{p}: annotation {i}: a Coordinate without X or Y")
        if not points:
            skipped += 1
            continue
        xy = _ring(p, [(_number(p, x), _number(p, y)) for x, y in points], f"annotation {i}")
        if len(np.unique(xy, axis=0)) < 3:  # a dot, or a line: no area
            skipped += 1
            continue
        out[kind].append(shapely.Polygon(xy))
    if not out["tumour"] and not out["excluded"]:
        raise DataError(f"{p}: no coordinates in any annotation" if vertices == 0 else
                        f"{p}: no annotation with 3 or more points")  # fmt: skip
    notes = [f"{skipped} annotations with fewer than 3 points left out"] if skipped else []
    if ungrouped:  # ASAP writes PartOfGroup="None" for an annotation put in no group
        notes.append(f"{ungrouped} annotations in no group counted as tumour")
    return out["tumour"], out["excluded"], notes


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _number(p: Path, text: str | None) -> float:
    try:
        return float(str(text).replace(",", "."))  # ASAP in some locales writes 1234,5
    except ValueError:
        raise DataError(f"{p}: coordinate {text!r} is not a number") from None


# ---------------------------------------------------------------------------- GeoJSON


def _read_geojson(p: Path) -> tuple[list[Any], list[Any], list[str]]:
    data = _read_bounded(p)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not valid JSON ({first_line(exc)})") from None
    out: dict[str, list[Any]] = {"tumour": [], "excluded": []}
    skipped, vertices = 0, 0
    for i, (geometry, name) in enumerate(_features(p, doc)):
        kind = _kind(p, name) if name is not None else "tumour"
        for poly_coords in _polygon_coords(p, geometry, i):
            if poly_coords is None:
                skipped += 1
                continue
            vertices += sum(len(r) for r in poly_coords)
            if vertices > MAX_VERTICES:
                raise DataError(f"{p}: more than {MAX_VERTICES:,} coordinates; refusing to read it")
            out[kind].append(_polygon(p, poly_coords, f"feature {i}"))
    if not out["tumour"] and not out["excluded"] and skipped == 0:
        raise DataError(f"{p}: no polygons in this GeoJSON")
    notes = [f"{skipped} points or lines left out (not areas)"] if skipped else []
    return out["tumour"], out["excluded"], notes


def _features(p: Path, doc: Any) -> Iterator[tuple[Any, str | None]]:
    """(geometry, class name or None) for each feature of a GeoJSON document."""
    if isinstance(doc, list):
        items: Iterable[Any] = doc
    elif isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise DataError(f"{p}: a FeatureCollection without a features list")
        items = features
    elif isinstance(doc, dict) and "type" in doc:
        items = [doc]
    else:
        raise DataError(f"{p}: not GeoJSON (no FeatureCollection, Feature or geometry)")
    for item in items:
        if not isinstance(item, dict):
            raise DataError(f"{p}: a feature is not a JSON object")
        if item.get("type") == "Feature":
            props = item.get("properties") or {}
            yield item.get("geometry"), _class_name(props if isinstance(props, dict) else {})
        else:
            yield item, None


def _class_name(props: dict[str, Any]) -> str | None:
    cls = props.get("classification")
    if isinstance(cls, dict):
        cls = cls.get("name")
    if isinstance(cls, str) and cls.strip():
        return cls
    return None


def _polygon_coords(p: Path, geometry: Any, i: int) -> Iterator[list[Any] | None]:
    """The rings of each polygon of ``geometry`` (None for each point or line)."""
    if not isinstance(geometry, dict):
        raise DataError(f"{p}: feature {i}: no geometry")
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "GeometryCollection":
        for g in geometry.get("geometries") or []:
            yield from _polygon_coords(p, g, i)
        return
    if kind in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        yield None
        return
    if kind not in ("Polygon", "MultiPolygon") or not isinstance(coords, list) or not coords:
        raise DataError(f"{p}: feature {i}: geometry type {kind!r} without coordinates")
    yield from ([coords] if kind == "Polygon" else coords)


def _polygon(p: Path, rings: Any, what: str) -> Any:
    import shapely

    if not isinstance(rings, list) or not rings:
        raise DataError(f"{p}: {what}: a polygon without rings")
    shell, *holes = (_ring(p, r, what) for r in rings)
    if len(shell) < 3:
        raise DataError(f"{p}: {what}: a polygon ring with fewer than 3 points")
    return shapely.Polygon(shell, [h for h in holes if len(h) >= 3])


# ---------------------------------------------------------------------------- mask images


def _read_mask(p: Path, downsample: float) -> list[Any]:
    """The tumour polygons of a mask image (non-zero = tumour), in level-0 pixels: the union of
    each 8-connected component's pixel squares (parts touching only at a corner become separate
    polygons; ``lesion_truth`` grows them into one evaluation region)."""
    import shapely
    import shapely.affinity
    from scipy import ndimage

    mask = _mask_pixels(p)
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
    polygons = []
    for k, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        part = labels[where] == k
        boxes = [shapely.box(c0, r, c1, r + 1) for r, c0, c1 in _runs(part)]
        geom = shapely.union_all(boxes)
        geom = shapely.affinity.translate(geom, where[1].start, where[0].start)
        polygons.append(shapely.affinity.scale(geom, downsample, downsample, origin=(0, 0)))
    return polygons


def _mask_pixels(p: Path) -> np.ndarray:
    if p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            with tifffile.TiffFile(p) as tif:
                page = tif.pages[0]
                shape = tuple(page.shape)
                _check_mask_size(p, shape)
                pixels = page.asarray()
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{p}: not a readable TIFF mask ({first_line(exc)})") from None
    else:
        from PIL import Image

        try:
            with Image.open(p) as im:
                _check_mask_size(p, (im.height, im.width))
                pixels = np.asarray(im.convert("L") if im.mode not in ("1", "L", "I") else im)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{p}: not a readable mask image ({first_line(exc)})") from None
    if pixels.ndim == 3:
        pixels = pixels[..., 0]
    if pixels.ndim != 2:
        raise DataError(f"{p}: a mask must be one image plane, got shape {pixels.shape}")
    return pixels != 0


def _check_mask_size(p: Path, shape: tuple[int, ...]) -> None:
    n = int(np.prod(shape[:2], dtype=np.int64))
    if n > MAX_MASK_PIXELS:
        raise DataError(f"{p}: a {shape[1]} x {shape[0]} mask is too large (at most "
                        f"{MAX_MASK_PIXELS:,} pixels: write it at a coarser level)")  # fmt: skip


def _runs(mask: np.ndarray) -> list[tuple[int, int, int]]:
    """(row, first col, end col) of each horizontal run of True pixels."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    rs, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    return list(zip(rs.tolist(), starts.tolist(), ends.tolist()))
