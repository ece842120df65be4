"""What the viewer draws over a slide: the probability map as a colourised, transparent PNG
placed in slide coordinates, and the lesion outlines with their diameters (``regions.geojson``).

The map's cells are enlarged (nearest neighbour) to at most ``MAX_OVERLAY_SIDE`` px so the
browser draws crisp cells; unclassified cells are clear, and a cell is the more opaque the higher
its probability (the page's slider scales the whole overlay's opacity).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.errors import DataError

MAX_OVERLAY_SIDE = 1024
MAX_MAP_CELLS = 4096 * 4096  # a probability.npy larger than this is not drawn
MAX_LESIONS = 5000  # outlines sent to the page (largest first, as regions.geojson lists them)
MAX_VERTICES = 400_000
# matplotlib's inferno (the heatmap's colour map) at 17 stops, interpolated: no matplotlib import
INFERNO = (0x000004, 0x0B0724, 0x210C4A, 0x3D0965, 0x57106E, 0x71196E, 0x8A226A, 0xA32C61,
           0xBC3754, 0xD24644, 0xE45A31, 0xF1731D, 0xF98E09, 0xFCAC11, 0xF9CB35, 0xF2EA69,
           0xFCFFA4)  # fmt: skip


def inferno_lut() -> np.ndarray:
    """256 x 3 uint8 colours of the inferno map."""
    stops = np.array([[(c >> 16) & 255, (c >> 8) & 255, c & 255] for c in INFERNO], float)
    x = np.linspace(0, 1, len(stops))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, x, stops[:, i]) for i in range(3)], 1).round().astype(np.uint8)


def overlay_png(probability: np.ndarray) -> bytes:
    """RGBA PNG of a rows x cols probability map (NaN: clear), cells enlarged alike."""
    from PIL import Image

    p = np.asarray(probability, dtype=np.float32)
    if p.ndim != 2 or p.size == 0:
        raise DataError(f"probability map of shape {p.shape}: expected rows x cols")
    known = np.isfinite(p)
    q = np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0)
    lut = inferno_lut()
    rgba = np.zeros((*p.shape, 4), np.uint8)
    rgba[..., :3] = lut[np.round(q * 255).astype(np.int64)]
    rgba[..., 3] = np.where(known, np.round(255 * np.sqrt(q)), 0).astype(np.uint8)
    k = max(1, min(16, MAX_OVERLAY_SIDE // max(p.shape)))
    if k > 1:
        rgba = rgba.repeat(k, 0).repeat(k, 1)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def read_probability(path: Path) -> np.ndarray:
    """``probability.npy``, checked to be a bounded 2-D float map before it is loaded."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a probability map ({type(exc).__name__})") from None
    if arr.ndim != 2 or arr.size > MAX_MAP_CELLS or arr.dtype.kind != "f":
        raise DataError(f"{path}: {arr.dtype} {arr.shape}: not a bounded 2-D probability map")
    return np.array(arr)


def placement(meta: dict[str, Any], shape: tuple[int, int]) -> dict[str, float]:
    """Where the map lies in level-0 pixels: x, y of cell (0, 0)'s corner, width, height."""
    try:
        ox, oy = (float(v) for v in meta["cell_origin_level0"])
        step = float(meta["step_level0"])
    except (KeyError, TypeError, ValueError):
        raise DataError("probability.json: no cell_origin_level0 / step_level0") from None
    rows, cols = shape
    return {"x": ox, "y": oy, "width": cols * step, "height": rows * step}


def lesion_outlines(geojson: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The lesions of ``regions.geojson`` (features whose objectType is ``annotation``) as
    ``{"name", "rings", "diameter_mm", "area_mm2"}``, largest first, bounded in count and
    vertices; the flag says whether some were left out."""
    out: list[dict[str, Any]] = []
    vertices = 0
    features = geojson.get("features") if isinstance(geojson, dict) else None
    for feature in features if isinstance(features, list) else []:
        props = feature.get("properties") or {} if isinstance(feature, dict) else {}
        if props.get("objectType") != "annotation":
            continue
        rings = _rings(feature.get("geometry"))
        if not rings:
            continue
        count = sum(len(r) for r in rings)
        if len(out) >= MAX_LESIONS or vertices + count > MAX_VERTICES:
            return out, True
        vertices += count
        m = props.get("measurements") or {}
        out.append(
            {
                "name": str(props.get("name") or feature.get("id") or f"lesion {len(out) + 1}"),
                "rings": rings,
                "diameter_mm": _float(m.get("longest_diameter_mm")),
                "area_mm2": _float(m.get("area_mm2")),
            }
        )
    return out, False


def _rings(geometry: Any) -> list[list[list[float]]]:
    if not isinstance(geometry, dict):
        return []
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    polygons = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else []
    rings = []
    for polygon in polygons or []:
        for ring in polygon or []:
            try:
                rings.append([[round(float(x), 1), round(float(y), 1)] for x, y, *_ in ring])
            except (TypeError, ValueError):
                continue
    return rings


def _float(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None
