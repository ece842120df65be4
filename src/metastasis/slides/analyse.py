"""One slide, end to end: open, tissue mask, tiles, classify (reading overlaps compute), regions.

``analyse_slide`` is the Python API for one slide; ``run_slides`` (``slides.run``) calls it for
each slide of a folder run. Reading happens in worker threads (each with its own handle on
the slide) that stay a few blocks ahead of the classifier: 1 on a CPU, where the two cores are
the model's, 4 on a GPU. A tile whose pixels fail to decode is marked ``decode_error`` and
counted; the slide goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from metastasis.extras import SLIDES, require
from metastasis.slides import staging
from metastasis.slides.classify import SlideClassifier
from metastasis.slides.options import SlideOptions, slide_options
from metastasis.slides.postprocess import PostProcess, chance_min_tiles, slide_score
from metastasis.slides.readers import SlideReader, open_slide, read_scaled
from metastasis.slides.regions import Lesion, find_lesions
from metastasis.slides.tiling import Block, Geometry, blocks, make_geometry, tissue_fractions
from metastasis.slides.tissue import Thumbnail, read_thumbnail, tissue_mask

if TYPE_CHECKING:
    from metastasis.transforms.stain import StainReference, StainSource

log = logging.getLogger(__name__)

STAIN_TILES = 64  # tissue tiles one slide's stain estimate is made from (spread over the slide)
THUMB_PX_PER_TILE = 16  # thumbnail resolution: a tile is about this many thumbnail pixels wide
STATUS_NONE, STATUS_OK, STATUS_DECODE_ERROR = 0, 1, 2


@dataclass
class SlideResult:
    """Everything measured on one slide; ``outputs.write_slide_outputs`` writes it."""

    slide_id: str
    path: Path
    reader: str
    geometry: Geometry
    thumbnail: Thumbnail
    tissue: np.ndarray  # thumbnail-sized bool mask
    tissue_threshold: float
    fractions: np.ndarray  # rows x cols tissue share per tile
    probability: np.ndarray  # rows x cols float32, NaN where not classified
    status: np.ndarray  # rows x cols uint8 (STATUS_*)
    lesions: list[Lesion]
    threshold: float
    category: str
    seconds: float
    mode: str
    engine: str
    tta: str
    cutoffs_mm: tuple[float, float]
    notes: list[str] = field(default_factory=list)
    model_warning: str | None = None  # what the checkpoint says of itself (synthetic data)
    post: PostProcess | None = None  # how the lesions were drawn from the map (postprocess)
    score: float | None = None  # the slide's score for slide-level AUC (post.score)
    min_tiles: float | None = None  # the smallest lesion reported here (chance_min_tiles)

    @property
    def cell_origin(self) -> tuple[float, float]:
        """Level-0 (x, y) of cell (0, 0)'s top-left corner."""
        g = self.geometry
        o = (g.patch - g.stride) / 2 * g.level0_per_model
        return o, o

    @property
    def cell_step(self) -> float:
        return self.geometry.stride * self.geometry.level0_per_model

    def summary(self) -> dict[str, Any]:
        g = self.geometry
        classified = int((self.status == STATUS_OK).sum())
        largest = self.lesions[0].diameter_mm if self.lesions else None
        return {
            "slide": self.slide_id,
            "path": str(self.path),
            "reader": self.reader,
            "level": g.level,
            "level_mpp": g.level_mpp,
            "mpp": g.mpp0,
            "model_mpp": g.model_mpp,
            "scale": g.scale,
            "stride": g.stride,
            "mode": self.mode,
            "engine": self.engine,
            "tta": self.tta,
            "threshold": self.threshold,
            "tissue_threshold": self.tissue_threshold,
            "tissue_area_mm2": float(self.tissue.sum()) * (self.thumbnail.mpp / 1000.0) ** 2,
            "tiles_classified": classified,
            "tiles_failed": int((self.status == STATUS_DECODE_ERROR).sum()),
            "lesions": len(self.lesions),
            "tumour_area_mm2": float(sum(les.area_mm2 for les in self.lesions)),
            "largest_diameter_mm": largest,
            "category": self.category,
            "category_cutoffs_mm": {"itc": self.cutoffs_mm[0], "micro": self.cutoffs_mm[1]},
            "slide_score": self.score,
            "slide_score_definition": self.post.score_definition() if self.post else None,
            "lesion_postprocess": self.post.describe() if self.post else None,
            "lesion_min_tiles": self.min_tiles,
            "seconds": round(self.seconds, 3),
            "tiles_per_s": round(classified / self.seconds, 1) if self.seconds > 0 else None,
            "notes": self.notes,
            "research_use_only": "not a diagnosis",
            "model_warning": self.model_warning,
        }


def prefetch_blocks(
    path: Path,
    mpp: float | None,
    reader: str,
    geo: Geometry,
    todo: list[Block],
    workers: int,
) -> Iterator[tuple[Block, Any]]:
    """Read and resample blocks in ``workers`` threads, a few ahead; yield them in order."""
    local = threading.local()
    handles: list[SlideReader] = []
    lock = threading.Lock()

    def read(block: Block) -> Any:
        slide = getattr(local, "slide", None)
        if slide is None:
            slide = local.slide = open_slide(path, mpp, reader)
            with lock:
                handles.append(slide)
        s = geo.scale
        x, y = block.col * geo.stride * s, block.row * geo.stride * s
        return read_scaled(slide, geo.level, x, y, block.side * s, block.side * s,
                           block.side, block.side)  # fmt: skip

    ahead = max(2, 2 * workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slide-reader")
    try:
        pending: list[tuple[Block, Future[Any]]] = []
        it = iter(todo)
        for block in it:
            pending.append((block, pool.submit(read, block)))
            if len(pending) >= ahead:
                break
        while pending:
            block, fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(read, nxt)))
            yield block, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for h in handles:
            h.close()


@dataclass
class TissueTiles:
    """Where one slide's tissue tiles are: how it is read, its thumbnail and tissue mask, and
    each tile's tissue share; ``selected`` (rows x cols) marks the tiles to process."""

    reader: str
    geometry: Geometry
    thumbnail: Thumbnail
    mask: np.ndarray
    threshold: float
    fractions: np.ndarray
    selected: np.ndarray


def find_tissue_tiles(
    path: Path,
    opts: SlideOptions,
    model_mpp: float,
    patch: int,
    stride: int,
    sid: str,
    notes: list[str],
) -> TissueTiles:
    """Open ``path``, lay out ``patch`` px tiles at ``model_mpp`` every ``stride`` px, and find
    the tissue tiles (``opts``: mpp, reader, tissue_threshold, min_tissue), as ``metastasis
    slides`` does before classifying and ``metastasis embed --slides`` before encoding."""
    with open_slide(path, opts.mpp, opts.reader) as slide:
        reader_name = slide.name
        geo = make_geometry(slide, model_mpp, patch, stride)
        thumb = read_thumbnail(slide, model_mpp * patch / THUMB_PX_PER_TILE)
    mask, used, fractions, selected = _tissue(geo, thumb, patch, model_mpp, opts, sid, notes)
    return TissueTiles(reader_name, geo, thumb, mask, used, fractions, selected)


def _tissue(
    geo: Geometry,
    thumb: Thumbnail,
    patch: int,
    model_mpp: float,
    opts: SlideOptions,
    sid: str,
    notes: list[str],
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The tissue mask (and the threshold it used), each tile's tissue fraction, and the tiles
    to classify; a slide smaller than a tile or without tissue gets a note."""
    tile_px = patch * model_mpp / thumb.mpp
    mask, used_threshold = tissue_mask(
        thumb.pixels, opts.tissue_threshold, int((tile_px / 2) ** 2), thumb.bad
    )
    fractions = tissue_fractions(geo, mask, thumb.downsample)
    selected = fractions >= max(opts.min_tissue, 1e-9)
    if geo.rows == 0 or geo.cols == 0:
        notes.append(f"the slide is smaller than one {geo.patch} px tile: nothing classified")
        log.warning("%s: smaller than one tile; nothing classified", sid)
    elif not selected.any():
        notes.append("no tissue found: nothing classified")
        log.warning("%s: no tissue found; nothing classified", sid)
    return mask, used_threshold, fractions, selected


def _slide_stain(
    path: Path,
    opts: SlideOptions,
    geo: Geometry,
    selected: np.ndarray,
    ref: StainReference,
    notes: list[str],
) -> StainSource | None:
    """One stain estimate (``stain.fit_source``) from up to ``STAIN_TILES`` tissue tiles
    spread over the slide, read as the classifier reads them; None when there is no tissue."""
    from metastasis.transforms.stain import fit_source

    cells = np.flatnonzero(selected)
    if len(cells) == 0:
        return None
    pick = cells[np.linspace(0, len(cells) - 1, min(STAIN_TILES, len(cells))).round().astype(int)]
    s, side = geo.scale, geo.patch * geo.scale
    tiles = []
    with open_slide(path, opts.mpp, opts.reader) as slide:
        for row, col in (divmod(int(i), geo.cols) for i in np.unique(pick)):
            x, y = col * geo.stride * s, row * geo.stride * s
            region = read_scaled(slide, geo.level, x, y, side, side, geo.patch, geo.patch)
            if region.bad is None or not region.bad.any():
                tiles.append(region.pixels)
    if not tiles:
        return None
    notes.append(f"stain normalised with one estimate from {len(tiles)} of its tissue tiles")
    return fit_source(ref, np.stack(tiles))


def analyse_slide(
    path: str | Path,
    classifier: SlideClassifier | str | Path | Any,
    options: SlideOptions | None = None,
    *,
    slide_id: str | None = None,
    engine: str = "auto",
    tta: str | None = None,
    device: str = "auto",
    threshold: float | None = None,
    progress: bool = True,
    on_reading: Callable[[], object] = lambda: None,
    **settings: Any,
) -> SlideResult:
    """Classify the tissue of one slide; nothing is written here (``write_slide_outputs``).

    ``classifier``: a ``SlideClassifier`` (made once for many slides), or a checkpoint / run
    folder / ``Bundle``, made into one with ``engine``, ``tta``, ``device``, ``threshold``
    and the options' ``stride`` and ``fully_conv``; ``options``: a ``SlideOptions``, or its
    settings as keywords (those of a folder run, ``shard``, ``patients`` and the like, do
    nothing here). ``on_reading`` is called when the tiles start to be read and classified."""
    require("whole-slide analysis", *SLIDES)  # one line naming the extra, not a traceback
    start = time.perf_counter()
    if options is None or settings:  # a given SlideOptions is already checked: use it as is
        options = slide_options({**(options.to_dict() if options is not None else {}), **settings})
    opts = options
    if not isinstance(classifier, SlideClassifier):
        classifier = SlideClassifier.from_checkpoint(
            classifier, stride=opts.stride, engine=engine, tta=tta, device=device,
            fully_conv=opts.fully_conv, block_tiles=opts.block_tiles, threshold=threshold,
        )  # fmt: skip
    post = PostProcess.from_options(  # before any slide is read; sigma and sizes in tiles
        opts, classifier.threshold, tile_cells=classifier.patch / classifier.stride
    )
    p, sid = Path(path), slide_id or Path(path).name
    notes = [f"the model was {classifier.bundle.warning}"] if classifier.bundle.warning else []
    found = find_tissue_tiles(
        p, opts, classifier.model_mpp, classifier.patch, classifier.stride, sid, notes
    )
    geo, thumb, selected = found.geometry, found.thumbnail, found.selected
    ref = classifier.stain_reference
    if ref is not None:  # one staining for the whole slide, or each tile its own
        per_slide = opts.stain_per_slide
        classifier.use_stain_source(
            _slide_stain(p, opts, geo, selected, ref, notes) if per_slide else None
        )
    threads = opts.workers or (1 if classifier.device_type == "cpu" else 4)
    reading = prefetch_blocks(p, opts.mpp, opts.reader, geo, blocks(geo, selected, classifier.n),
                              threads)  # fmt: skip
    on_reading()
    probability, status = _classify_blocks(reading, classifier, geo, selected, sid, progress)
    failed = int((status == STATUS_DECODE_ERROR).sum())
    if failed:
        notes.append(f"{failed} tiles could not be decoded (status decode_error in tiles.csv)")
        log.warning("%s: %d tiles could not be decoded; marked in tiles.csv", sid, failed)
    threshold = classifier.threshold
    cell = (geo.patch - geo.stride) / 2 * geo.level0_per_model
    min_tiles = chance_min_tiles(probability, post)  # once: the shuffles cost a little
    lesions = find_lesions(probability, threshold, (cell, cell), geo.stride * geo.level0_per_model,
                           geo.mpp0, replace(post, min_tiles=min_tiles, shuffles=0))  # fmt: skip
    largest = lesions[0].diameter_mm if lesions else None
    score = slide_score(probability, largest, post)
    unread = bool(failed) or (thumb.bad is not None and bool(thumb.bad.any()))
    category = _category(largest, opts.itc_mm, opts.micro_mm, unread, notes)
    seconds = time.perf_counter() - start
    result = SlideResult(
        sid, p, found.reader, geo, thumb, found.mask, found.threshold, found.fractions, probability,
        status, lesions, threshold, category, seconds, classifier.mode, classifier.engine_text,
        classifier.tta, (opts.itc_mm, opts.micro_mm), notes, classifier.bundle.warning,
        post, score, min_tiles,
    )  # fmt: skip
    done_tiles = int((status == STATUS_OK).sum())
    log.info(
        "%s: %s, level %d (%.3f um/px, scale %.3f), %d tiles in %.1f s (%.0f tiles/s, %s), "
        "%d lesions, largest %s: %s",
        sid, found.reader, geo.level, geo.level_mpp, geo.scale, done_tiles, seconds,
        done_tiles / seconds if seconds > 0 else 0.0, classifier.mode, len(lesions),
        f"{largest:.2f} mm" if largest is not None else "none", category,
    )  # fmt: skip
    return result


def _classify_blocks(
    reading: Iterator[tuple[Block, Any]],
    classifier: SlideClassifier,
    geo: Geometry,
    selected: np.ndarray,
    sid: str,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The probability map (NaN where not classified) and the status of every tile, from the
    blocks ``reading`` yields; tiles touching undecodable pixels are ``STATUS_DECODE_ERROR``."""
    n = classifier.n
    probability = np.full((geo.rows, geo.cols), np.nan, np.float32)
    status = np.zeros((geo.rows, geo.cols), np.uint8)
    bar = tqdm(total=int(selected.sum()), desc=sid[:40], unit="tile", disable=not progress,
               leave=False, smoothing=0.1)  # fmt: skip
    try:
        for block, region in reading:
            rs = slice(block.row, block.row + n)
            cs = slice(block.col, block.col + n)
            sel = np.zeros((n, n), bool)
            part = selected[rs, cs]
            sel[: part.shape[0], : part.shape[1]] = part
            if region.bad is not None:
                broken = _broken_tiles(region.bad, n, geo.stride, geo.patch) & sel
                status[rs, cs][broken[: part.shape[0], : part.shape[1]]] = STATUS_DECODE_ERROR
                sel &= ~broken
            probs = classifier.classify(region.pixels, sel)
            h, w = part.shape
            done = sel[:h, :w]
            probability[rs, cs][done] = probs[:h, :w][done]
            status[rs, cs][done] = STATUS_OK
            bar.update(int(part.sum()))
    finally:
        bar.close()
    return probability, status


def _category(
    largest_mm: float | None, itc_mm: float, micro_mm: float, unread: bool, notes: list[str]
) -> str:
    """The node's category; ``unknown``, never ``negative``, when part of it was unreadable."""
    category = staging.slide_category(largest_mm, itc_mm, micro_mm)
    if category == "negative" and unread:  # the tumour may be exactly where nothing was read
        notes.append("category unknown, not negative: no tumour in the tissue examined, but "
                     "part of the slide could not be decoded")  # fmt: skip
        return staging.UNKNOWN
    return category


def _broken_tiles(bad: np.ndarray, n: int, stride: int, patch: int) -> np.ndarray:
    out = np.zeros((n, n), bool)
    if not bad.any():
        return out
    for r in range(n):
        for c in range(n):
            out[r, c] = bool(
                bad[r * stride : r * stride + patch, c * stride : c * stride + patch].any()
            )
    return out
