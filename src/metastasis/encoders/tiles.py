"""A slide's tissue tiles as embedding store rows; ``embed_slides``: ``embed --slides``.

Tiles are found exactly as ``metastasis slides`` finds them (``slides.analyse.find_tissue_tiles``:
the level nearest ``tile_mpp`` from the fine side, the same tissue mask and ``min_tissue``
share), side by side (stride = tile size), and read in blocks of ``n x n`` tiles by the same
reading threads (``prefetch_blocks``). ``SlideTiles`` is what ``store.build_store`` needs: a
fingerprint (the slide file's size, modification time and a SHA-256 of its first MiB, with
its data folder's listing for MIRAX, plus every tiling parameter), ``len`` and ``images``
sliced a chunk at a time, so a slide's store is atomic, resumable and in bounded memory like a
data set's. Its tiles table (``tiles.csv``: ``slide, tile, row, col, x, y, size, x_um, y_um,
size_um, tissue``; x, y: the tile's top-left corner in level-0 pixels) travels in the store
folder, row ``i`` describing embedding ``i``. Tissue is looked for only when the store has to
be built: a finished store is found from the fingerprint alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.encoders.backbone import Encoder, build_encoder
from metastasis.encoders.embed import resolve_encoder
from metastasis.encoders.registry import EncoderSpec
from metastasis.encoders.store import EmbeddingStore, build_store
from metastasis.encoders.weights import Weights
from metastasis.errors import MetastasisError, OutputError, first_line
from metastasis.io import atomic_path, atomic_write_json
from metastasis.settings import Settings, setting
from metastasis.slides.analyse import TissueTiles, find_tissue_tiles, prefetch_blocks
from metastasis.slides.options import SlideOptions, slide_options
from metastasis.slides.readers import slide_files
from metastasis.slides.tiling import Block, tiles_per_block

TILE_MPP = 0.5  # 20x: what UNI, CONCH, Virchow and CLAM's feature extraction read tiles at
HEAD_BYTES = 1 << 20  # the slide's fingerprint hashes its first MiB
TILES_CSV = "tiles.csv"
TILING_JSON = "tiling.json"
# Slide options that change which tiles are read, or their pixels: part of the fingerprint.
TILING_OPTIONS = ("mpp", "reader", "tissue_threshold", "min_tissue")


class TileOptions(Settings):
    """The tiles a slide is embedded as (``metastasis embed --slides``)."""

    tile_mpp: float = setting(
        TILE_MPP, "microns per pixel tiles are read at (0.5: 20x, as UNI, CONCH and CLAM)", gt=0
    )
    tile_size: int | None = setting(
        None, "tile side in pixels at --tile-mpp (side by side); resized to the encoder's input",
        default_text="the encoder's input size", ge=8,
    )  # fmt: skip


def file_fingerprint(path: Path) -> str:
    """A slide's identity: size, modification time and SHA-256 of the first MiB of its file,
    and the names, sizes and times of its data folder's files (MIRAX)."""
    h = hashlib.sha256()
    for f in slide_files(path):
        if f.is_dir():
            for e in sorted(f.iterdir()):
                st = e.stat()
                h.update(f"{e.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            continue
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(HEAD_BYTES))
    return h.hexdigest()[:20]


@dataclass
class SlideTiles:
    """One slide's tissue tiles of ``tile_size`` px at ``tile_mpp``, as rows of a store."""

    path: Path
    slide_id: str
    options: SlideOptions
    tile_mpp: float
    tile_size: int
    meta: dict[str, Any] = field(default_factory=dict)
    _found: TissueTiles | None = None
    _fingerprint: str | None = None

    def __post_init__(self) -> None:
        self.meta = {"split": self.slide_id}

    @property
    def name(self) -> str:
        return self.slide_id

    def tiling(self) -> dict[str, Any]:
        """Every parameter the tiles depend on (recorded in ``tiling.json``)."""
        opts = self.options.to_dict()
        return {
            "tile_mpp": self.tile_mpp,
            "tile_size": self.tile_size,
            "stride": self.tile_size,
            **{k: opts[k] for k in TILING_OPTIONS},
        }

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            text = json.dumps([file_fingerprint(self.path), self.tiling()], sort_keys=True)
            self._fingerprint = hashlib.sha256(text.encode()).hexdigest()[:20]
        return self._fingerprint

    @property
    def found(self) -> TissueTiles:
        if self._found is None:
            size = self.tile_size
            notes: list[str] = []
            self._found = find_tissue_tiles(
                self.path, self.options, self.tile_mpp, size, size, self.slide_id, notes
            )
        return self._found

    @property
    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the tissue tiles, row by row: the store's row order."""
        rows, cols = np.nonzero(self.found.selected)
        return rows, cols

    def __len__(self) -> int:
        return int(self.found.selected.sum())

    @property
    def images(self) -> _TileImages:
        return _TileImages(self)

    def table(self) -> Any:
        """The tiles table: one row per embedding (see the module doc)."""
        import pandas as pd

        geo = self.found.geometry
        rows, cols = self.positions
        x, y = geo.tile_origin_level0(rows, cols)
        size = geo.patch * geo.level0_per_model
        return pd.DataFrame(
            {
                "slide": self.slide_id,
                "tile": np.arange(len(rows)),
                "row": rows,
                "col": cols,
                "x": np.round(x, 2),
                "y": np.round(y, 2),
                "size": round(size, 2),
                "x_um": np.round(x * geo.mpp0, 2),
                "y_um": np.round(y * geo.mpp0, 2),
                "size_um": round(size * geo.mpp0, 2),
                "tissue": np.round(self.found.fractions[rows, cols], 4),
            }
        )

    def write_table(self, folder: Path) -> None:
        """``tiles.csv`` and ``tiling.json`` into the store's folder (once)."""
        if (folder / TILES_CSV).is_file() and (folder / TILING_JSON).is_file():
            return
        with atomic_path(folder / TILES_CSV) as tmp:
            self.table().to_csv(tmp, index=False)
        found = self.found
        atomic_write_json(
            folder / TILING_JSON,
            {
                "slide": self.slide_id,
                "path": str(self.path),
                **self.tiling(),
                "reader_used": found.reader,
                "tissue_threshold_used": found.threshold,
                "geometry": found.geometry.to_dict(),
                "tiles": len(self),
            },
        )

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tiles ``start:stop`` (store order) as uint8 N x S x S x 3, read block by block."""
        rows, cols = (a[start:stop] for a in self.positions)
        s = self.tile_size
        out = np.empty((len(rows), s, s, 3), np.uint8)
        if not len(rows):
            return out
        geo = self.found.geometry
        n = self.options.block_tiles or tiles_per_block(s, s)
        wanted: dict[tuple[int, int], list[int]] = {}
        for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):
            wanted.setdefault((r - r % n, c - c % n), []).append(i)
        todo = [Block(r, c, n, s * n) for r, c in sorted(wanted)]
        opts = self.options
        reading = prefetch_blocks(self.path, opts.mpp, opts.reader, geo, todo, opts.workers or 1)
        for block, region in reading:
            for i in wanted[(block.row, block.col)]:
                y, x = (int(rows[i]) - block.row) * s, (int(cols[i]) - block.col) * s
                out[i] = region.pixels[y : y + s, x : x + s]
        return out


class _TileImages:
    """``SlideTiles.images``: sliced, it reads those tiles from the slide."""

    def __init__(self, tiles: SlideTiles) -> None:
        self.tiles = tiles

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: slice) -> np.ndarray:
        start, stop, step = index.indices(len(self.tiles))
        if step != 1:
            raise IndexError("slide tiles are read in contiguous slices")
        return self.tiles.read(start, stop)


@dataclass
class SlideEmbedResult:
    spec: EncoderSpec
    weights: Weights
    shard: tuple[int, int]
    slides: int  # slides of every shard
    stores: dict[str, EmbeddingStore] = field(default_factory=dict)  # this shard's, by slide id
    failed: dict[str, str] = field(default_factory=dict)  # slide id -> one-line reason


def embed_slides(
    paths: Sequence[str | Path] | str | Path,
    encoder: str,
    weights: str | Path | None,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    model_kwargs: dict[str, Any] | None = None,
    input_size: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    tile_mpp: float | None = None,
    tile_size: int | None = None,
    options: SlideOptions | None = None,
    **settings: Any,
) -> SlideEmbedResult:
    """One store per slide of ``paths`` (files, or folders of slides) of its tissue tiles.

    ``tile_mpp``, ``tile_size``: ``TileOptions`` (default 0.5 um/px, the encoder's input
    size); ``options`` or keywords: ``SlideOptions`` (mpp, reader, tissue_threshold,
    min_tissue, workers, block_tiles, shard). A slide that cannot be read is a one-line reason
    in ``failed`` and the others go on."""
    from metastasis.extras import SLIDES, require
    from metastasis.slides.run import assign_ids, list_slides

    require("slide embedding", *SLIDES)
    opts = slide_options({**(options.to_dict() if options is not None else {}), **settings})
    tiles = TileOptions.model_validate(
        {k: v for k, v in dict(tile_mpp=tile_mpp, tile_size=tile_size).items() if v is not None}
    )
    spec, found = resolve_encoder(encoder, weights, model_kwargs, input_size)
    everything = assign_ids(list_slides([paths] if isinstance(paths, (str, Path)) else paths))
    if not everything:
        raise MetastasisError("embed --slides: no slides found")
    index, count = opts.shard_index
    result = SlideEmbedResult(spec, found, (index, count), len(everything))
    root = Path(cache_dir) / "embeddings" if cache_dir else None
    built: list[Encoder] = []  # built once, when the first slide needs it

    def once() -> Encoder:
        if not built:
            built.append(build_encoder(spec, found))
        return built[0]

    for sid, p in everything[index::count]:
        rows = SlideTiles(p, sid, opts, tiles.tile_mpp, tiles.tile_size or spec.input_size)
        try:
            store = build_store(
                rows, spec, found, once, root,
                batch_size=batch_size, device=device, progress=progress, prepare=rows.write_table,
            )  # fmt: skip
        except OutputError:
            raise
        except Exception as exc:  # one slide's failure must not stop the others
            result.failed[sid] = first_line(exc, with_type=not isinstance(exc, MetastasisError))
            continue
        assert store is not None  # one process builds every chunk of its slides
        result.stores[sid] = store
    return result
