"""A slides output folder as the viewer reads it: the slide list of ``slides.csv`` and, per
slide, its ``summary.json`` (the slide file's path, um/px, category), ``probability.json`` (the
map's grid in level-0 pixels) and the files beside them.

Slide names come from the table, never from a URL as a path: :meth:`SlidesFolder.slide` looks a
name up among the table's rows, and every file is opened as ``OUT/<name from the table>/<fixed
file name>``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metastasis.errors import DataError

SLIDES_CSV = "slides.csv"


class UnknownSlide(LookupError):
    """A name that is not a row of the folder's table (answered with a 404)."""


@dataclass
class SlideEntry:
    """One row of ``slides.csv`` and what its folder says about the slide."""

    name: str
    status: str
    category: str | None
    folder: Path
    summary: dict[str, Any] = field(default_factory=dict)
    table_path: str | None = None  # the slide's path as the table records it

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.summary)

    def listing(self) -> dict[str, Any]:
        """The slide's row in ``/api/slides``."""
        s = self.summary
        return {
            "name": self.name,
            "status": self.status,
            "category": self.category,
            "lesions": s.get("lesions"),
            "largest_diameter_mm": _number(s.get("largest_diameter_mm")),
            "viewable": self.ok,
        }

    def probability_meta(self) -> dict[str, Any] | None:
        return _read_json(self.folder / "probability.json")

    def slide_path(self, out: Path) -> Path | None:
        """The slide file: the summary's path (or the table's) as given, else relative to the
        output folder; None when no candidate exists."""
        for raw in (self.summary.get("path"), self.table_path):
            if not raw:
                continue
            p = Path(str(raw))
            for candidate in [p] if p.is_absolute() else [p, out / p]:
                if candidate.is_file():
                    return candidate
        return None

    def mpp(self) -> float | None:
        """Microns per level-0 pixel the run used (its ``--mpp`` or the file's)."""
        return _number(self.summary.get("mpp"))


class SlidesFolder:
    """The slides of one output folder, by name (the ``slide`` column of ``slides.csv``)."""

    def __init__(self, out: str | Path) -> None:
        import pandas as pd

        self.out = Path(out)
        table = self.out / SLIDES_CSV
        if not table.is_file():
            raise DataError(f"{table}: no such file; give the --out folder of `metastasis slides`")
        try:
            frame = pd.read_csv(table, dtype={"slide": str}, keep_default_na=False)
        except Exception as exc:  # ParserError, UnicodeDecodeError, EmptyDataError
            raise DataError(f"{table}: not a slides table ({type(exc).__name__})") from None
        if "slide" not in frame.columns:
            raise DataError(f"{table}: no 'slide' column; not a table `metastasis slides` wrote")
        self.slides: dict[str, SlideEntry] = {}
        for row in frame.to_dict("records"):
            name = str(row["slide"])
            if not name or name in self.slides or "/" in name or name in (".", ".."):
                continue  # a name that could not be a folder of this run is not shown
            folder = self.out / name
            summary = _read_json(folder / "summary.json") or {}
            if summary.get("complete") is not True:
                summary = {}
            category = summary.get("category") or row.get("category") or None
            self.slides[name] = SlideEntry(
                name=name,
                status=str(row.get("status") or ("ok" if summary else "unknown")),
                category=str(category) if category else None,
                folder=folder,
                summary=summary,
                table_path=str(row.get("path") or "") or None,
            )

    def slide(self, name: str) -> SlideEntry:
        """The entry named ``name`` in the table, or ``UnknownSlide``."""
        entry = self.slides.get(name)
        if entry is None:
            raise UnknownSlide(f"unknown slide {name!r}: not a row of {self.out / SLIDES_CSV}")
        return entry

    def listing(self) -> list[dict[str, Any]]:
        return [e.listing() for e in self.slides.values()]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
