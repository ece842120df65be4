"""Build a mosaic whole slide from real PCam patches, with tumour blobs at known places.

    python benchmarks/make_mosaic_slide.py --data ../shared/data/pcam-jpeg/valid \\
        --out /tmp/slides-bench/mosaic.tif --size 20000 --mpp 0.972

The slide is a grid of 96x96 px cells (origin at level 0's top-left corner). About half of it is
glass (light, faintly noisy background patches); the rest is tissue made of real label-0 patches
(two lobes), with real label-1 patches filling a few blobs of known shape and size (circles of
3, 1, 0.5, 0.3 and 0.15 mm and a 1.5 x 0.6 mm ellipse at --size 20000; smaller slides get
proportionally smaller blobs): a cell is tumour when its centre lies in
a blob. Each patch is drawn at random from its pool and turned by a random dihedral (D4) move.
Seeded and deterministic.

Written with tifffile as a pyramidal tiled JPEG TIFF that OpenSlide reads as a "generic tiled
TIFF" (one full-resolution page and reduced-resolution pages, each half the size of the one
before, in the main IFD chain; X/Y resolution in pixels per centimetre, so mpp is recorded) and
tifffile reads as one series with levels. Never the whole level in memory: each level is made
and written a strip of tiles at a time.

Beside it: ``<out stem>.truth.json`` (grid, blobs with their centres, true diameters and the
longest diameter of their cells, cell counts, tissue fraction) and ``<out stem>.tumour.png`` /
``<out stem>.tissue.png`` (the masks, one pixel per 96 px cell). Needs tifffile and imagecodecs
(the ``[wsi]`` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CELL = 96  # PCam patch size: the mosaic's grid step at level 0
GLASS = (236, 234, 240)  # background colour (light grey-violet, like glass on a scan)


@dataclass(frozen=True)
class Blob:
    """A tumour region: an ellipse (a circle when major == minor), in mm and level-0 cells."""

    name: str
    col: int  # centre cell (its centre is the blob's centre)
    row: int
    major_mm: float  # true longest diameter
    minor_mm: float
    angle_deg: float = 0.0

    def contains(self, x_px: np.ndarray, y_px: np.ndarray, mpp: float) -> np.ndarray:
        cx, cy = (self.col + 0.5) * CELL, (self.row + 0.5) * CELL
        a = self.major_mm * 1000 / mpp / 2
        b = self.minor_mm * 1000 / mpp / 2
        t = math.radians(self.angle_deg)
        dx, dy = x_px - cx, y_px - cy
        u = dx * math.cos(t) + dy * math.sin(t)
        v = -dx * math.sin(t) + dy * math.cos(t)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0


# Tissue: two elliptic lobes (centre col, row, semi-axes in cells), for a 208 x 208 grid; scaled
# with the grid for other sizes. Blobs sit in the lobes, far from each other.
LOBES = ((0.385, 0.5, 0.337, 0.457), (0.84, 0.29, 0.087, 0.12))
BLOBS = (
    ("macro-3mm", 0.337, 0.337, 3.0, 3.0, 0.0),
    ("micro-1mm", 0.457, 0.673, 1.0, 1.0, 0.0),
    ("micro-ellipse-1.5x0.6mm", 0.48, 0.192, 1.5, 0.6, 30.0),
    ("micro-0.5mm", 0.84, 0.29, 0.5, 0.5, 0.0),
    ("micro-0.3mm", 0.24, 0.72, 0.3, 0.3, 0.0),
    ("itc-0.15mm", 0.385, 0.87, 0.15, 0.15, 0.0),
)


def load_pool(folder: Path) -> np.ndarray:
    files = sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png"))
    if not files:
        raise SystemExit(f"{folder}: no .jpg/.png patches")
    pool = np.empty((len(files), CELL, CELL, 3), np.uint8)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            arr = np.asarray(im.convert("RGB"))
        if arr.shape != (CELL, CELL, 3):
            raise SystemExit(f"{f}: {arr.shape}, expected 96x96 RGB")
        pool[i] = arr
    return pool


def glass_pool(rng: np.random.Generator, n: int = 16) -> np.ndarray:
    base = np.array(GLASS, np.float32) + rng.normal(0, 1.5, (n, 1, 1, 3))
    noise = rng.normal(0, 1.5, (n, CELL, CELL, 3))
    return np.clip(np.rint(base + noise), 0, 255).astype(np.uint8)


def layout(grid: int, mpp: float) -> tuple[np.ndarray, np.ndarray, list[Blob]]:
    """(tissue mask, tumour mask) on the grid of cells, and the blobs."""
    rows, cols = np.mgrid[0:grid, 0:grid]
    tissue = np.zeros((grid, grid), bool)
    for cx, cy, ax, ay in LOBES:
        tissue |= ((cols + 0.5 - cx * grid) / (ax * grid)) ** 2 + (
            (rows + 0.5 - cy * grid) / (ay * grid)
        ) ** 2 <= 1.0
    shrink = min(1.0, grid / 208)  # smaller slides (quick checks): blobs shrink with them
    blobs = [
        Blob(name, round(fx * grid), round(fy * grid), major * shrink, minor * shrink, angle)
        for name, fx, fy, major, minor, angle in BLOBS
    ]
    tumour = np.zeros_like(tissue)
    xs, ys = (cols + 0.5) * CELL, (rows + 0.5) * CELL
    for blob in blobs:
        tumour |= blob.contains(xs, ys, mpp)
    if (tumour & ~tissue).any():
        raise SystemExit("a blob leaves the tissue: choose a larger --size")
    return tissue, tumour, blobs


def cells_longest_diameter_px(cells: np.ndarray) -> float:
    """Longest distance between two points of the union of the cell squares (corner to corner)."""
    rr, cc = np.nonzero(cells)
    if rr.size == 0:
        return 0.0
    corners = np.concatenate(
        [np.stack([(cc + dx) * CELL, (rr + dy) * CELL], 1) for dx in (0, 1) for dy in (0, 1)]
    ).astype(np.float64)
    corners = np.unique(corners, axis=0)
    # the farthest pair lies on the convex hull; a few thousand points: brute force in chunks
    best = 0.0
    for i in range(0, len(corners), 512):
        d = ((corners[i : i + 512, None, :] - corners[None, :, :]) ** 2).sum(-1)
        best = max(best, float(d.max()))
    return math.sqrt(best)


def d4(patch: np.ndarray, move: int) -> np.ndarray:
    out = np.rot90(patch, move % 4)
    return out[:, ::-1] if move >= 4 else out


class Mosaic:
    """Which patch, turned how, goes in each cell; renders rows of cells at any level."""

    def __init__(self, data: Path, size: int, mpp: float, seed: int) -> None:
        self.size, self.mpp = size, mpp
        self.grid = size // CELL
        rng = np.random.default_rng(seed)
        self.pools = [glass_pool(rng), load_pool(data / "0"), load_pool(data / "1")]
        self.tissue, self.tumour, self.blobs = layout(self.grid, mpp)
        self.kind = np.where(self.tumour, 2, np.where(self.tissue, 1, 0)).astype(np.int8)
        sizes = np.array([len(p) for p in self.pools])
        self.index = (rng.random(self.kind.shape) * sizes[self.kind]).astype(np.int64)
        self.move = rng.integers(0, 8, self.kind.shape)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def cell_row(self, level: int, row: int) -> np.ndarray:
        """Row ``row`` of cells at ``level`` (cell size 96 / 2**level), as one strip."""
        key = (level, row)
        if key not in self._cache:
            f = 2**level
            c = CELL // f
            out = np.empty((c, self.grid * c, 3), np.uint8)
            for col in range(self.grid):
                patch = d4(self.pools[self.kind[row, col]][self.index[row, col]],
                           int(self.move[row, col]))  # fmt: skip
                if f > 1:
                    patch = patch.reshape(c, f, c, f, 3).mean((1, 3)).round().astype(np.uint8)
                out[:, col * c : (col + 1) * c] = patch
            self._cache = {key: out}  # strips advance downwards: keep only the last row
        return self._cache[key]

    def tiles(self, level: int, tile: int) -> Iterator[np.ndarray]:
        """The level's tiles in row-major order, edge tiles padded (what tifffile expects)."""
        f = 2**level
        c = CELL // f
        width = height = math.ceil(self.size / f)
        n_across = math.ceil(width / tile)
        for y0 in range(0, height, tile):
            strip = np.empty((tile, n_across * tile, 3), np.uint8)
            strip[:] = GLASS
            for row in range(y0 // c, min(self.grid, math.ceil((y0 + tile) / c))):
                cells = self.cell_row(level, row)
                top, bottom = max(row * c, y0), min((row + 1) * c, y0 + tile)
                strip[top - y0 : bottom - y0, : cells.shape[1]] = cells[
                    top - row * c : bottom - row * c
                ]
            strip[:, width:] = GLASS
            if y0 + tile > height:
                strip[height - y0 :] = GLASS
            for x0 in range(0, n_across * tile, tile):
                yield strip[:, x0 : x0 + tile]


def write_tiff(mosaic: Mosaic, out: Path, tile: int, quality: int, levels: int) -> None:
    import tifffile

    # exact rational pixels per centimetre (1e4 / mpp), so readers get mpp back to the last digit
    num, den = 10_000_000, round(mosaic.mpp * 1000)
    tmp = out.with_name(out.name + ".part")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for level in range(levels):
            side = math.ceil(mosaic.size / 2**level)
            res = (num, den * 2**level)
            tif.write(
                mosaic.tiles(level, tile),
                shape=(side, side, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": quality},  # YCbCr, 2x2 chroma subsampling
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                subfiletype=1 if level else 0,
                description="mosaic of PCam patches (metastasis benchmarks)" if not level else None,
                metadata=None,
            )
    tmp.replace(out)


def truth(mosaic: Mosaic, args: argparse.Namespace, tiff: Path) -> dict:
    mpp, grid = mosaic.mpp, mosaic.grid
    rows, cols = np.mgrid[0:grid, 0:grid]
    blobs = []
    for blob in mosaic.blobs:
        cells = blob.contains((cols + 0.5) * CELL, (rows + 0.5) * CELL, mpp)
        blobs.append({
            "name": blob.name,
            "centre_px": [(blob.col + 0.5) * CELL, (blob.row + 0.5) * CELL],
            "true_longest_diameter_mm": blob.major_mm,
            "true_minor_diameter_mm": blob.minor_mm,
            "angle_deg": blob.angle_deg,
            "true_area_mm2": math.pi * blob.major_mm * blob.minor_mm / 4,
            "cells": int(cells.sum()),
            "cells_area_mm2": float(cells.sum() * (CELL * mpp / 1000) ** 2),
            "cells_longest_diameter_mm": cells_longest_diameter_px(cells) * mpp / 1000,
        })  # fmt: skip
    return {
        "slide": str(tiff),
        "size_px": [mosaic.size, mosaic.size],
        "mpp": mpp,
        "cell_px": CELL,
        "grid": [grid, grid],
        "grid_origin_px": [0, 0],
        "seed": args.seed,
        "data": str(args.data),
        "tile": args.tile,
        "jpeg_quality": args.quality,
        "levels": args.levels,
        "pool_sizes": {
            "glass": len(mosaic.pools[0]),
            "normal": len(mosaic.pools[1]),
            "tumour": len(mosaic.pools[2]),
        },
        "cells": {
            "background": int((mosaic.kind == 0).sum()),
            "normal": int((mosaic.kind == 1).sum()),
            "tumour": int((mosaic.kind == 2).sum()),
        },
        "tissue_fraction_of_slide": float(mosaic.tissue.sum() * CELL**2 / mosaic.size**2),
        "masks": {
            "tumour": "tumour.png",
            "tissue": "tissue.png",
            "pixel": "one pixel per 96 px cell; row r, column c covers level-0 "
            "x in [96c, 96c+96), y in [96r, 96r+96)",
        },
        "blobs": blobs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with 0/ and 1/ patches")
    ap.add_argument("--out", type=Path, required=True, help="the slide, e.g. /tmp/x/mosaic.tif")
    ap.add_argument("--size", type=int, default=20000, help="side in level-0 pixels")
    ap.add_argument("--mpp", type=float, default=0.972, help="microns per pixel of level 0")
    ap.add_argument("--tile", type=int, default=512, choices=(256, 512))
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality")
    ap.add_argument("--levels", type=int, default=0, help="pyramid levels (0: down to ~1000 px)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.size < 20 * CELL:
        ap.error("--size must be at least 1920 (20 cells)")
    if not args.levels:
        args.levels = 1
        while args.levels < 6 and args.size / 2**args.levels >= 1000:
            args.levels += 1
    start = time.perf_counter()
    mosaic = Mosaic(args.data, args.size, args.mpp, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_tiff(mosaic, args.out, args.tile, args.quality, args.levels)
    stem = args.out.with_suffix("")
    result = truth(mosaic, args, args.out)
    result["masks"]["tumour"] = f"{stem.name}.tumour.png"
    result["masks"]["tissue"] = f"{stem.name}.tissue.png"
    Image.fromarray(mosaic.tumour.astype(np.uint8) * 255).save(f"{stem}.tumour.png")
    Image.fromarray(mosaic.tissue.astype(np.uint8) * 255).save(f"{stem}.tissue.png")
    Path(f"{stem}.truth.json").write_text(json.dumps(result, indent=1))
    keys = ("size_px", "mpp", "cells", "tissue_fraction_of_slide")
    print(json.dumps({k: result[k] for k in keys}))
    for b in result["blobs"]:
        print(f"  {b['name']}: {b['cells']} cells, true {b['true_longest_diameter_mm']:.3f} mm, "
              f"cells' longest {b['cells_longest_diameter_mm']:.3f} mm")  # fmt: skip
    size_mb = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({size_mb:.0f} MiB, {args.levels} levels) in "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
