"""What a listing of one split is: its items, its index-level findings and what it left out.

Each layout's lister (``kaggle.py``, ``folder.py``, ``pcam_h5.py``) returns a ``Listing``;
``layouts.py`` detects which layout a path holds. Nothing here decodes pixels.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from metastasis.data.decode import UNREADABLE, image_extensions
from metastasis.errors import DataError

# Index-level problem kinds (see also decode.py for per-image kinds).
MISSING_FILE = "missing_file"
UNLABELLED_FILE = "unlabelled_file"
DUPLICATE_ID = "duplicate_id"
BAD_LABEL = "bad_label"


@dataclass(frozen=True)
class Item:
    """One patch: an image file, or row `row` of a PCam HDF5 file."""

    id: str
    label: int | None
    path: Path | None = None
    row: int = -1


@dataclass(frozen=True)
class Excluded:
    """A file (or index row) left out by the listing itself, before any pixel is decoded."""

    id: str
    source: str  # printable path relative to the listing's root
    kind: str  # DUPLICATE_ID, BAD_LABEL or decode.UNREADABLE (a file name that is not UTF-8)
    detail: str
    path: Path | None = None


@dataclass
class Finding:
    """One kind of problem, with how many items it touches and the first few of them."""

    kind: str
    count: int
    examples: list[str] = field(default_factory=list)
    description: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "count": self.count,
            "description": self.description,
            "examples": self.examples,
        }


@dataclass
class Listing:
    """The usable items of one split, and what was wrong with the index (CSV, folders)."""

    layout: str  # "kaggle" | "pcam-h5" | "folder"
    split: str
    root: Path
    items: list[Item]
    findings: list[Finding] = field(default_factory=list)
    labelled: bool = True
    h5_files: tuple[Path, ...] = ()  # PCam: (x file, y file)
    excluded: list[Excluded] = field(default_factory=list)  # listed in items.csv with a problem


def listdir(folder: Path) -> list[Path]:
    """The entries of ``folder`` (one level, never following links into sub-folders)."""
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise DataError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None


def image_files(folder: Path) -> list[Path]:
    """Image files (by extension) directly in ``folder``, names not valid UTF-8 included."""
    exts = image_extensions()
    try:
        return [p for p in listdir(folder) if p.suffix.lower() in exts and not p.is_dir()]
    except OSError as exc:
        raise DataError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None


def printable(name: str) -> str:
    """``name`` with bytes that are not UTF-8 (kept by Python as surrogates) shown as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _good_name(path: Path) -> bool:
    return printable(path.name) == path.name


def split_names(paths: list[Path], root: Path) -> tuple[list[Path], list[Excluded]]:
    """Files with usable names, and the others (not UTF-8) as exclusions named printably."""
    good = [p for p in paths if _good_name(p)]
    bad = [
        Excluded(
            printable(p.stem),
            printable(rel_name(p, root)),
            UNREADABLE,
            "file name is not valid UTF-8 (rename the file)",
        )
        for p in paths
        if not _good_name(p)
    ]
    return good, bad


def rel_name(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def finding(kind: str, names: list[str], description: str) -> Finding:
    return Finding(kind, len(names), [printable(n) for n in names[:10]], description)


def dedupe(items: list[Item], root: Path) -> tuple[list[Item], list[Finding], list[Excluded]]:
    """Drop every item whose id occurs more than once: we cannot tell which copy is right."""
    counts = Counter(it.id for it in items)
    dup = sorted(i for i, c in counts.items() if c > 1)
    if not dup:
        return items, [], []
    dup_set = set(dup)
    kept = [it for it in items if it.id not in dup_set]
    excluded = [
        Excluded(
            it.id,
            rel_name(it.path, root),
            DUPLICATE_ID,
            f"{counts[it.id]} files named {it.id}.*",
            it.path,
        )
        for it in items
        if it.id in dup_set and it.path is not None
    ]
    found = finding(DUPLICATE_ID, dup, "ids listed more than once (all copies excluded)")
    return kept, [found], excluded


def group_names(items: list[Item]) -> dict[int | None, int]:
    """Counts per label."""
    out: dict[int | None, int] = defaultdict(int)
    for it in items:
        out[it.label] += 1
    return dict(out)
