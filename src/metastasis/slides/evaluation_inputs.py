"""What ``slides-eval`` reads, each checked with a one-line error naming the file: the slides of a
run (``OUT/slides.csv`` and each ``OUT/<slide>/`` folder's map and summary), the slide labels
CSV, the CAMELYON17-style stage CSV and the slide-to-patient table."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metastasis.errors import DataError, first_line
from metastasis.io import regular_file

MAX_CSV_BYTES = 64 * 2**20
MAX_CELLS = 200_000_000  # a probability map larger than this (800 MB of float32) is refused
POSITIVE = {"tumor", "tumour", "1", "true", "positive", "metastasis", "metastases", "yes"}
NEGATIVE = {"normal", "0", "false", "negative", "no", "none"}
NODE = re.compile(r"^(?P<patient>.+)_node_\d+$", re.IGNORECASE)


def read_summary(folder: Path) -> dict[str, Any] | None:
    """A slide folder's ``summary.json`` if complete (as ``slides.outputs.read_summary`` reads
    it; not imported from there, which would load the classifier's libraries)."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("complete") is True else None


@dataclass
class RunSlide:
    slide: str
    status: str  # ok / failed / pending
    summary: dict[str, Any] | None


def run_slides_of(out_dir: Path) -> list[RunSlide]:
    """The slides of a slides run: ``slides.csv``'s rows (a row ``ok`` whose folder holds no
    complete summary is ``missing``), else every folder with a complete ``summary.json``."""
    table = out_dir / "slides.csv"
    if not out_dir.is_dir():
        raise DataError(f"{out_dir}: no such slides output folder")
    if table.is_file():
        try:
            rows = pd.read_csv(table, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{table}: not a readable CSV ({first_line(exc)})") from None
        if not {"slide", "status"} <= set(rows.columns):
            raise DataError(f"{table}: needs the columns slide and status (a slides run's table)")
        out = []
        for sid, status in zip(rows["slide"], rows["status"]):
            summary = read_summary(out_dir / sid) if status == "ok" else None
            out.append(RunSlide(sid, status if summary is not None or status != "ok" else
                                "missing", summary))  # fmt: skip
        return out
    found = [
        RunSlide(d.name, "ok", read_summary(d)) for d in sorted(out_dir.iterdir()) if d.is_dir()
    ]
    found = [s for s in found if s.summary is not None]
    if not found:
        raise DataError(f"{out_dir}: no slides.csv and no slide folder with a summary.json "
                        "(not the --out of `metastasis slides`)")  # fmt: skip
    return found


def read_map(folder: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A slide's probability map and its grid (``probability.json``), size bounded."""
    npy, meta_path = folder / "probability.npy", folder / "probability.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        lazy = np.load(npy, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{folder}: cannot read probability.npy/.json ({first_line(exc)})"
        ) from None
    if lazy.ndim != 2 or lazy.size > MAX_CELLS:
        raise DataError(f"{npy}: expected a 2-D map of at most {MAX_CELLS:,} cells, got "
                        f"shape {lazy.shape}")  # fmt: skip
    for key in ("cell_origin_level0", "step_level0", "mpp"):
        if key not in meta:
            raise DataError(f"{meta_path}: no {key!r} (not a slides run's probability.json)")
    return np.asarray(lazy, np.float32), meta


def _csv(path: str | Path, columns: tuple[str, str]) -> pd.DataFrame:
    """The first two columns of a CSV with the header ``columns``, or without a header (rows
    may have more fields, or fewer: CAMELYON16's reference.csv adds the lesion type to tumour
    rows only)."""
    import csv

    p = Path(path)
    regular_file(p)
    if p.stat().st_size > MAX_CSV_BYTES:
        raise DataError(f"{p}: too large for a table of slides (over {MAX_CSV_BYTES >> 20} MiB)")
    try:
        with open(p, encoding="utf-8-sig", newline="") as fh:
            rows = [r for r in csv.reader(fh) if any(v.strip() for v in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{p}: not a readable CSV ({first_line(exc, with_type=True)})") from None
    if not rows or any(len(r) < 2 for r in rows):
        raise DataError(f"{p}: needs two columns ({', '.join(columns)}) in every row")
    head = [v.strip().casefold() for v in rows[0]]
    if head[0] == columns[0] or head[1] == columns[1]:
        if not set(columns) <= set(head):
            raise DataError(f"{p}: needs the columns {' and '.join(columns)}")
        index = [head.index(c) for c in columns]
        rows = [[r[i] if i < len(r) else "" for i in index] for r in rows[1:]]
    frame = pd.DataFrame([r[:2] for r in rows], columns=list(columns), dtype=str)
    return frame.apply(lambda col: col.str.strip())


def stem(name: str) -> str:
    """A slide's name without folder and extension(s) (``test_001.tif`` -> ``test_001``)."""
    base = Path(name).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base


def read_labels(path: str | Path) -> dict[str, int]:
    """slide stem (case folded) -> 1 (tumour) / 0 (normal) from a labels CSV (CAMELYON16's
    reference.csv: ``Test_001,Tumor,Macro,...`` without a header, or ``slide,label``)."""
    frame = _csv(path, ("slide", "label"))
    out: dict[str, int] = {}
    for i, (slide, label) in enumerate(zip(frame["slide"], frame["label"])):
        text = label.casefold()
        if text not in POSITIVE | NEGATIVE:
            raise DataError(f"{path}: row {i + 1}: label {label!r} is neither tumour "
                            "(Tumor, 1) nor normal (Normal, 0)")  # fmt: skip
        out[stem(slide).casefold()] = int(text in POSITIVE)
    return out


@dataclass
class Stages:
    """A CAMELYON17-style stage table: the true pN stage per patient, and the category and
    patient of each slide (slides by their case-folded stem)."""

    patient_stage: dict[str, str]
    slide_category: dict[str, str]
    slide_patient: dict[str, str]


def read_stages(path: str | Path) -> Stages:
    """``patient,stage`` rows: ``patient_X.zip,pN1`` (a patient) and ``patient_X_node_Y.tif,
    micro`` (a slide, whose patient is ``patient_X``); a name without a suffix and not named
    ``..._node_N`` is a patient."""
    from metastasis.slides import staging

    frame = _csv(path, ("patient", "stage"))
    stages, cats, links = {}, {}, {}
    for i, (name, value) in enumerate(zip(frame["patient"], frame["stage"])):
        low = value.strip()
        is_slide = not name.lower().endswith(".zip") and ("." in name or NODE.match(name))
        if not is_slide:
            if low not in staging.STAGES:
                raise DataError(f"{path}: row {i + 1}: stage {value!r} is not one of "
                                f"{', '.join(staging.STAGES)}")  # fmt: skip
            stages[stem(name)] = low
            continue
        cat = low.casefold()
        if cat not in staging.CATEGORIES:
            raise DataError(f"{path}: row {i + 1}: category {value!r} is not one of "
                            f"{', '.join(staging.CATEGORIES)}")  # fmt: skip
        cats[stem(name).casefold()] = cat
        m = NODE.match(stem(name))
        if m:
            links[stem(name).casefold()] = m.group("patient")
    return Stages(stages, cats, links)


def read_links(path: str | Path) -> dict[str, str]:
    """slide stem (case folded) -> patient from a ``slide,patient`` CSV."""
    frame = _csv(path, ("slide", "patient"))
    return {stem(s).casefold(): p for s, p in zip(frame["slide"], frame["patient"])}
