"""Synthetic evaluation slides with lesions of known outline, annotated as CAMELYON annotates.

    python benchmarks/make_eval_slides.py ../shared/data/pcam-jpeg/valid /tmp/eval-slides \\
        --slides 25 --seed 0

Each slide is a square grid of 96 px cells at 0.972 um/px (PCam's resolution, the ``mpp`` every
checkpoint of this toolkit records: ``transforms.presets.PCAM_MPP``), written as a pyramidal
tiled JPEG TIFF by ``make_mosaic_slide.write_tiff`` (OpenSlide's generic tiled TIFF, tifffile's
one series with levels; X/Y resolution recorded). Tissue is an irregular lobe of real label-0
patches (each turned by a random D4 move) on glass; a tumour slide has irregular polygons
(random harmonics around a circle, scaled to a chosen longest diameter) whose pixels come from
real label-1 patches: the polygon *is* the annotation, pixel for pixel. Slides are grouped into
patients of five nodes (CAMELYON17), the nodes' categories following a fixed pattern so that
every pN stage from pN0 to pN2 occurs; the largest lesion of a node sets its category by
CAMELYON17's rules (ITC <= 0.2 mm, micro <= 2 mm, macro > 2 mm, longest diameter).

Every slide draws its patches from its own share of the valid split (the label-0 pool split
into ``--slides`` disjoint shares, the label-1 pool into one share per tumour slide), so no
patch appears on two slides; within a slide, patches repeat (under random D4 moves).

Written into OUT: ``<slide>.tif``; for each tumour slide ``<slide>.xml`` (ASAP, group ``_0``)
and ``<slide>.geojson`` (QuPath: one Polygon feature per lesion, classification Tumor);
``labels.csv`` (slide, label tumor/normal, category), ``stages.csv`` (CAMELYON17's
``patient,stage`` layout: ``patient_000.zip,pN1`` and ``patient_000_node_0.tif,macro``),
``patients.csv`` (slide, patient: ``metastasis slides --patients``) and ``truth.json`` (every
lesion's outline, longest diameter and area; the patch shares). Seeded and deterministic.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_mosaic_slide import CELL, GLASS, d4, glass_pool, load_pool, write_tiff

from metastasis.slides.staging import ITC_MM, MICRO_MM, pn_stage, slide_category

MPP = 0.972  # PCam's microns per pixel: what the checkpoints expect (PCAM_MPP)
# The categories of a patient's five nodes (CAMELYON17), patient by patient: pN0, pN0(i+),
# pN1mi, pN1, pN2; cycled when there are more slides.
PATTERN = (
    ("negative",) * 5,
    ("itc", "negative", "itc", "negative", "negative"),
    ("micro", "negative", "itc", "micro", "negative"),
    ("macro", "micro", "negative", "itc", "macro"),
    ("macro", "macro", "micro", "macro", "macro"),
)
GAP_MM = 0.6  # lesions of a slide lie at least this far apart (separate lesions)


def irregular_polygon(rng: np.random.Generator, diameter_px: float) -> np.ndarray:
    """An irregular star-shaped polygon around (0, 0) whose longest diameter is ``diameter_px``."""
    t = np.sort(rng.uniform(0, 2 * np.pi, 28))
    r = np.ones_like(t)
    for k in (2, 3, 4, 5):
        r += rng.uniform(0, 0.28 / k * 2) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    return pts * diameter_px / feret(pts)


def feret(pts: np.ndarray) -> float:
    d = pts[:, None, :] - pts[None, :, :]
    return float(np.sqrt((d**2).sum(-1)).max())


def polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def tissue_cells(rng: np.random.Generator, grid: int) -> np.ndarray:
    """An irregular lobe covering roughly 60% of the grid (cells whose centre lies inside)."""
    outline = irregular_polygon(rng, 0.9 * grid * CELL) + grid * CELL / 2
    img = Image.new("L", (grid, grid), 0)
    ImageDraw.Draw(img).polygon([(x / CELL - 0.5, y / CELL - 0.5) for x, y in outline], fill=1)
    return np.asarray(img, bool)


def lesion_sizes(rng: np.random.Generator, category: str) -> list[float]:
    """Longest diameters (mm) of a slide's lesions, the largest first."""
    if category == "negative":
        return []
    if category == "itc":
        return [float(rng.uniform(0.1, 0.19)) for _ in range(int(rng.integers(1, 3)))]
    if category == "micro":
        extra = [float(rng.uniform(0.1, 0.45)) for _ in range(int(rng.integers(0, 3)))]
        return [float(rng.uniform(0.5, 1.9)), *extra]
    # macro: three lesions (a macro, two micro), as in the check (3 lesions, all found)
    return [float(rng.uniform(2.2, 2.8)), float(rng.uniform(0.5, 1.5)),
            float(rng.uniform(0.3, 0.5))]  # fmt: skip


def place_lesions(
    rng: np.random.Generator, tissue: np.ndarray, sizes: list[float]
) -> list[np.ndarray] | None:
    """Polygons (level-0 px) of the given diameters, inside the tissue and apart from each other."""
    from scipy import ndimage

    inner = ndimage.distance_transform_edt(tissue) * CELL  # px from the glass
    placed: list[tuple[np.ndarray, np.ndarray, float]] = []
    gap = GAP_MM * 1000 / MPP
    for mm in sizes:
        d_px = mm * 1000 / MPP
        rows, cols = np.nonzero(inner >= d_px / 2 + 2 * CELL)
        for k in rng.permutation(len(rows))[:2000]:
            centre = np.array([(cols[k] + 0.5) * CELL, (rows[k] + 0.5) * CELL])
            if all(np.hypot(*(centre - o)) > (d_px + dd) / 2 + gap for _, o, dd in placed):
                placed.append((irregular_polygon(rng, d_px) + centre, centre, d_px))
                break
        else:
            return None  # no room: the caller draws another tissue outline
    return [p for p, _, _ in placed]


class ArraySlide:
    """An in-memory slide with ``make_mosaic_slide.write_tiff``'s interface (size, mpp, tiles)."""

    def __init__(self, image: np.ndarray, mpp: float) -> None:
        self.size, self.mpp = image.shape[0], mpp
        self.levels = [image]

    def level(self, k: int) -> np.ndarray:
        while len(self.levels) <= k:
            a = self.levels[-1]
            h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
            down = a[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3))
            self.levels.append(np.rint(down).astype(np.uint8))
        return self.levels[k]

    def tiles(self, level: int, tile: int) -> Iterator[np.ndarray]:
        a = self.level(level)
        side = math.ceil(self.size / 2**level)
        for y0 in range(0, side, tile):
            for x0 in range(0, side, tile):
                out = np.empty((tile, tile, 3), np.uint8)
                out[:] = GLASS
                part = a[y0 : y0 + tile, x0 : x0 + tile]
                out[: part.shape[0], : part.shape[1]] = part
                yield out


def render(
    rng: np.random.Generator, tissue: np.ndarray, polygons: list[np.ndarray],
    normal: np.ndarray, tumour: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Level 0: glass, label-0 patches on tissue cells, label-1 pixels inside the polygons."""
    grid = tissue.shape[0]
    glass = glass_pool(rng)
    side = grid * CELL
    image = np.empty((side, side, 3), np.uint8)
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    for poly in polygons:
        draw.polygon([tuple(p) for p in poly.tolist()], fill=1)
    inside = np.asarray(mask, bool)
    for r in range(grid):
        for c in range(grid):
            cell = (slice(r * CELL, (r + 1) * CELL), slice(c * CELL, (c + 1) * CELL))
            move = int(rng.integers(0, 8))
            if not tissue[r, c]:
                image[cell] = glass[rng.integers(len(glass))]
                continue
            image[cell] = d4(normal[rng.integers(len(normal))], move)
            m = inside[cell]
            if m.any():
                t = d4(tumour[rng.integers(len(tumour))], int(rng.integers(0, 8)))
                image[cell][m] = t[m]
    return image


def asap_xml(polygons: list[np.ndarray]) -> str:
    lines = ['<?xml version="1.0"?>', "<ASAP_Annotations>", "\t<Annotations>"]
    for i, poly in enumerate(polygons):
        lines.append(f'\t\t<Annotation Name={quoteattr(f"Annotation {i}")} Type="Polygon" '
                     'PartOfGroup="_0" Color="#F4FA58">')  # fmt: skip
        lines.append("\t\t\t<Coordinates>")
        for k, (x, y) in enumerate(poly.tolist()):
            lines.append(f'\t\t\t\t<Coordinate Order="{k}" X="{x:.2f}" Y="{y:.2f}" />')
        lines += ["\t\t\t</Coordinates>", "\t\t</Annotation>"]
    lines += ["\t</Annotations>", "\t<AnnotationGroups>",
              '\t\t<Group Name="_0" PartOfGroup="None" Color="#ff0000">',
              "\t\t\t<Attributes />", "\t\t</Group>", "\t</AnnotationGroups>",
              "</ASAP_Annotations>", ""]  # fmt: skip
    return "\n".join(lines)


def geojson(polygons: list[np.ndarray]) -> dict:
    features = []
    for i, poly in enumerate(polygons):
        ring = [[round(x, 2), round(y, 2)] for x, y in poly.tolist()]
        ring.append(ring[0])
        if polygon_area(poly) > 0 and _clockwise(poly):
            ring.reverse()  # RFC 7946: exterior rings counter-clockwise
        features.append({"type": "Feature", "id": f"lesion-{i}",
                         "geometry": {"type": "Polygon", "coordinates": [ring]},
                         "properties": {"objectType": "annotation", "name": f"lesion {i}",
                                        "classification": {"name": "Tumor"}}})  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


def _clockwise(poly: np.ndarray) -> bool:
    x, y = poly[:, 0], poly[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) < 0


def plan(n: int) -> list[tuple[str, str, str]]:
    """(slide, patient, intended category) for n slides, five nodes a patient."""
    return [(f"patient_{i // 5:03d}_node_{i % 5}", f"patient_{i // 5:03d}",
             PATTERN[(i // 5) % len(PATTERN)][i % 5]) for i in range(n)]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="PCam valid folder with 0/ and 1/ patches")
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--slides", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", type=int, default=60, help="cells (96 px) per side")
    args = ap.parse_args()
    if args.slides < 1 or args.grid < 32:
        ap.error("--slides >= 1 and --grid >= 32")
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    slides = plan(args.slides)
    normal, tumour = load_pool(args.data / "0"), load_pool(args.data / "1")
    normal, tumour = normal[rng.permutation(len(normal))], tumour[rng.permutation(len(tumour))]
    n_tumour = sum(cat != "negative" for _, _, cat in slides)
    normal_shares = np.array_split(np.arange(len(normal)), args.slides)
    tumour_shares = iter(np.array_split(np.arange(len(tumour)), max(1, n_tumour)))
    args.out.mkdir(parents=True, exist_ok=True)
    truth: dict = {"mpp": MPP, "cell_px": CELL, "grid": args.grid, "seed": args.seed,
                   "data": str(args.data), "cutoffs_mm": {"itc": ITC_MM, "micro": MICRO_MM},
                   "slides": []}  # fmt: skip
    for i, (name, patient, intended) in enumerate(slides):
        rng = np.random.default_rng([args.seed, i])  # each slide its own stream
        sizes = lesion_sizes(rng, intended)
        for _ in range(500):
            tissue = tissue_cells(rng, args.grid)
            polygons = place_lesions(rng, tissue, sizes)
            if polygons is not None:
                break
        else:
            raise SystemExit(f"{name}: no room for lesions of {sizes} mm: use a larger --grid")
        shares = normal_shares[i]
        pos = next(tumour_shares) if polygons else np.arange(1)
        image = render(rng, tissue, polygons, normal[shares], tumour[pos])
        write_tiff(ArraySlide(image, MPP), args.out / f"{name}.tif", 512, 90, 4)
        diameters = [feret(p) * MPP / 1000 for p in polygons]
        category = slide_category(max(diameters) if diameters else None)
        if category != intended:
            raise SystemExit(f"{name}: {category}, meant {intended} (a bug in the sizes)")
        if polygons:
            (args.out / f"{name}.xml").write_text(asap_xml(polygons))
            (args.out / f"{name}.geojson").write_text(json.dumps(geojson(polygons)))
        truth["slides"].append({
            "slide": name, "patient": patient, "category": category,
            "tissue_cells": int(tissue.sum()), "normal_patches": len(shares),
            "tumour_patches": len(pos) if polygons else 0,
            "lesions": [{"diameter_mm": d, "area_mm2": polygon_area(p) * (MPP / 1000) ** 2,
                         "category": slide_category(d), "polygon_px": np.round(p, 2).tolist()}
                        for p, d in zip(polygons, diameters)],
        })  # fmt: skip
        print(f"{name}: {category}, {int(tissue.sum())} tissue cells, lesions "
              f"{', '.join(f'{d:.2f}' for d in diameters) or '-'} mm", flush=True)  # fmt: skip
    write_tables(args.out, truth["slides"])
    (args.out / "truth.json").write_text(json.dumps(truth, indent=1))
    print(f"wrote {len(slides)} slides into {args.out} in {time.perf_counter() - start:.0f} s")


def write_tables(out: Path, rows: list[dict]) -> None:
    with open(out / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide", "label", "category"])
        for r in rows:
            w.writerow([r["slide"], "normal" if r["category"] == "negative" else "tumor",
                        r["category"]])  # fmt: skip
    with open(out / "patients.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide", "patient"])
        w.writerows([r["slide"], r["patient"]] for r in rows)
    with open(out / "stages.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient", "stage"])
        for patient in sorted({r["patient"] for r in rows}):
            nodes = [r for r in rows if r["patient"] == patient]
            w.writerow([f"{patient}.zip", pn_stage(r["category"] for r in nodes)])
            w.writerows([f"{r['slide']}.tif", r["category"]] for r in nodes)


if __name__ == "__main__":
    main()
