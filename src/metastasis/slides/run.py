"""Folder runs: many slides, resumable, shardable, with a table, a report and pN stages.

``run_slides(paths, checkpoint, out, ...)`` is the Python API behind ``metastasis slides``:
it lists the slides (files given, and the slide files of folders given), keeps this shard's
share (``shard="I/N"``: slides ``I, I+N, I+2N, ...`` of the sorted list, I from 0), loads the
checkpoint once, and for each slide either skips it (its ``summary.json`` exists: done by an
earlier run) or analyses it and writes its outputs (``outputs``). A slide that fails (not a
slide, damaged, no resolution...) gets a one-line reason in ``<slide>/failed.json`` and in
the table, and the run goes on. Last, ``slides.csv`` (every slide of the full list: ``ok``,
``failed`` or ``pending`` for slides another shard has not finished), ``report.html`` and,
with ``patients``, ``patients.csv`` (pN stage per patient) are rebuilt from the slide folders.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from metastasis.errors import DataError, MetastasisError, OutputError
from metastasis.io import atomic_path, atomic_write_json, check_outputs, output_dir
from metastasis.slides import staging
from metastasis.slides.analyse import MIN_TISSUE, analyse_slide
from metastasis.slides.classify import SlideClassifier
from metastasis.slides.outputs import SUMMARY, read_summary, write_slide_outputs
from metastasis.slides.reader import (
    IMAGE_SUFFIXES,
    MAX_MPP,
    READERS,
    SLIDE_SUFFIXES,
    TIFF_SUFFIXES,
)

log = logging.getLogger(__name__)

FAILED = "failed.json"
SLIDES_CSV = "slides.csv"
SUFFIXES = SLIDE_SUFFIXES | TIFF_SUFFIXES | IMAGE_SUFFIXES
COLUMNS = [
    "slide", "path", "status", "reason", "category", "largest_diameter_mm", "tumour_area_mm2",
    "lesions", "tissue_area_mm2", "tiles_classified", "tiles_failed", "reader", "level", "mpp",
    "scale", "seconds",
]  # fmt: skip


def display(path: Path | str) -> str:
    """A path as text that can always be written as UTF-8 (undecodable bytes as U+FFFD)."""
    return os.fsencode(path).decode("utf-8", "replace")


def slide_id(path: Path) -> str:
    """The output folder name of a slide: its name without the extension(s), made safe."""
    name = display(path.name)
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    safe = re.sub(r"[^\w.+-]", "_", name).lstrip(".")
    return safe or "slide"


def list_slides(paths: Sequence[str | Path]) -> list[Path]:
    """Files given, and the files with a slide or image suffix inside folders given (sorted)."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += sorted(
                f for f in p.iterdir()
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in SUFFIXES
            )  # fmt: skip
        elif p.exists() or p.is_symlink():
            found.append(p)
        else:
            raise DataError(f"{display(p)}: no such file or folder")
    return found


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    if isinstance(shard, tuple):
        i, n = shard
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise MetastasisError(f"--shard must be I/N (e.g. 0/4), got {shard!r}")
        i, n = int(m.group(1)), int(m.group(2))
    if not 0 <= i < n:
        raise MetastasisError(f"--shard I/N needs 0 <= I < N, got {i}/{n}")
    return i, n


def assign_ids(slides: list[Path]) -> list[tuple[str, Path]]:
    seen: dict[str, int] = {}
    out = []
    for p in slides:
        sid = slide_id(p)
        k = seen.get(sid, 0)
        seen[sid] = k + 1
        out.append((sid if k == 0 else f"{sid}-{k + 1}", p))
    return out


def run_slides(
    paths: Sequence[str | Path] | str | Path,
    checkpoint: Any,
    out: str | Path,
    *,
    stride: int = 96,
    mpp: float | None = None,
    engine: str = "auto",
    tta: str | None = None,
    tissue_threshold: float | None = None,
    geojson_tiles: bool = False,
    shard: str | tuple[int, int] | None = None,
    patients: str | Path | None = None,
    reader: str = "auto",
    device: str = "auto",
    batch_size: int = 256,
    min_tissue: float = MIN_TISSUE,
    itc_mm: float = staging.ITC_MM,
    micro_mm: float = staging.MICRO_MM,
    fully_conv: str = "auto",
    workers: int | None = None,
    resume: bool = True,
    progress: bool = True,
    block_tiles: int | None = None,
) -> pd.DataFrame:
    """Analyse slides into ``out/<slide>/`` and return the table written to ``slides.csv``.

    ``checkpoint``: a checkpoint file, a run folder or a loaded ``Bundle``. See the module
    notes for resume, shards and failures; ``analyse_slide`` and ``outputs`` for the rest.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if reader not in READERS:
        raise MetastasisError(f"unknown reader {reader!r}; known: {', '.join(READERS)}")
    if mpp is not None and not 0 < mpp < MAX_MPP:
        raise MetastasisError(f"--mpp {mpp} is not a plausible resolution (0 < mpp < {MAX_MPP:g})")
    if not 0 < itc_mm < micro_mm:
        raise MetastasisError(f"cut-offs must satisfy 0 < --itc-mm ({itc_mm}) < --micro-mm "
                              f"({micro_mm})")  # fmt: skip
    index, count = parse_shard(shard)
    everything = assign_ids(list_slides(paths))
    if not everything:
        raise DataError(f"no slides found in {', '.join(display(p) for p in paths)}")
    mine = everything[index::count]
    out_dir = Path(out)
    check_outputs(folders=[out_dir])
    output_dir(out_dir)
    todo = [(s, p) for s, p in mine if not (resume and read_summary(out_dir / s) is not None)]
    if len(todo) < len(mine):
        log.info("%d of %d slides already done; skipping them", len(mine) - len(todo), len(mine))
    if todo:
        classifier = SlideClassifier.from_checkpoint(
            checkpoint, stride=stride, engine=engine, tta=tta, device=device,
            batch_size=batch_size, fully_conv=fully_conv, block_tiles=block_tiles,
        )  # fmt: skip
        log.info("classifier: %s, %s, stride %d", classifier.mode, classifier.engine_text, stride)
        for sid, p in todo:
            folder = out_dir / sid
            if folder.exists():  # half-written by a killed run, or failed before: redo
                shutil.rmtree(folder)
            try:
                result = analyse_slide(
                    p, classifier, slide_id=sid, mpp=mpp, reader=reader,
                    tissue_threshold=tissue_threshold, min_tissue=min_tissue, itc_mm=itc_mm,
                    micro_mm=micro_mm, workers=workers, progress=progress,
                )  # fmt: skip
                result.path = Path(display(p))
                write_slide_outputs(result, folder, geojson_tiles)
            except OutputError:  # the output folder itself is broken: every slide would fail
                raise
            except Exception as exc:  # one slide's failure must not stop the others
                reason = _one_line(exc)
                log.error("%s: failed: %s", sid, reason)
                log.debug("%s: failure details", sid, exc_info=True)
                shutil.rmtree(folder, ignore_errors=True)
                atomic_write_json(
                    folder / FAILED, {"slide": sid, "path": display(p), "reason": reason}
                )
    table = slides_table(everything, out_dir)
    with atomic_path(out_dir / SLIDES_CSV) as tmp:
        table.to_csv(tmp, index=False)
    stages = None
    if patients is not None:
        stages = patient_stages(table, patients)
        with atomic_path(out_dir / "patients.csv") as tmp:
            stages.to_csv(tmp, index=False)
    from metastasis.slides.report import write_report

    write_report(table, out_dir, stages)
    return table


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0].encode("utf-8", "surrogateescape").decode("utf-8", "replace") if text else ""
    if isinstance(exc, MetastasisError):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def slides_table(slides: list[tuple[str, Path]], out_dir: Path) -> pd.DataFrame:
    """One row per slide of the full list, from the slide folders (ok / failed / pending)."""
    import json

    rows: list[dict[str, Any]] = []
    for sid, p in slides:
        folder = out_dir / sid
        summary = read_summary(folder)
        row: dict[str, Any] = {"slide": sid, "path": display(p)}
        if summary is not None:
            row.update({k: summary.get(k) for k in COLUMNS if k in summary})
            row.update(status="ok", reason="", path=display(p))
        elif (folder / FAILED).is_file():
            try:
                reason = json.loads((folder / FAILED).read_text(encoding="utf-8"))["reason"]
            except (OSError, ValueError, KeyError, TypeError):
                reason = "failed"
            row.update(status="failed", reason=reason)
        else:
            row.update(status="pending", reason="not analysed yet (another shard, or killed)")
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    ints = ["lesions", "tiles_classified", "tiles_failed", "level"]
    table[ints] = table[ints].astype("Int64")  # empty (not NaN floats) for failed slides
    return table


def patient_stages(table: pd.DataFrame, patients: str | Path) -> pd.DataFrame:
    """pN stage per patient from a CSV with columns ``slide`` and ``patient``.

    A row's ``slide`` matches a slide id, a file name or a file stem. A patient with a slide
    that failed or is missing gets ``unknown``."""
    p = Path(patients)
    try:
        links = pd.read_csv(p, dtype=str)
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: not a readable CSV ({_one_line(exc)})") from None
    if not {"slide", "patient"} <= set(links.columns):
        raise DataError(f"{p}: needs the columns slide and patient")
    lookup: dict[str, Any] = {}
    for _, row in table.iterrows():
        name = Path(str(row["path"])).name
        cat = row["category"] if row["status"] == "ok" else None
        for key in (row["slide"], name, name.split(".")[0]):
            lookup[str(key)] = cat
    out = []
    for patient, group in links.groupby("patient", sort=True):
        cats = [lookup.get(str(s)) for s in group["slide"]]
        out.append(
            {
                "patient": patient,
                "slides": len(cats),
                "categories": ";".join(c or "unknown" for c in cats),
                "stage": staging.pn_stage(cats),
            }
        )
    return pd.DataFrame(out, columns=["patient", "slides", "categories", "stage"])


__all__ = ["SUMMARY", "run_slides", "slides_table"]
