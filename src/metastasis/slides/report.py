"""``report.html`` of a folder run: the table (headings in words, with units), patients' pN
stages, and each slide's heatmap and thumbnail with a caption (the template ``slides.html`` of
:mod:`metastasis.reports.html`). Wide tables scroll inside their box, never the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from metastasis.reports.html import frame_table, write_page
from metastasis.reports.names import words

NOTICE = (
    "Research use only: these maps, sizes, categories and stages come from a patch classifier "
    "and are not a diagnosis."
)
# The columns of slides.csv the page shows, and their headings in words (``reports.names``, the
# one vocabulary; the key is each heading's tooltip).
COLUMNS = [
    "slide", "status", "category", "largest_diameter_mm", "tumour_area_mm2", "lesions",
    "tissue_area_mm2", "tiles_classified", "tiles_failed", "level", "mpp", "reason",
]  # fmt: skip
HEADINGS = {key: words(key) for key in COLUMNS}
PATIENT_HEADINGS = {key: words(key) for key in ("patient", "slides", "categories", "stage")}
CATEGORIES = {
    "negative": "negative",
    "itc": "ITC",
    "micro": "micro-metastasis",
    "macro": "macro-metastasis",
    "unknown": "unknown",
}
CATEGORY_NOTE = (
    "Node categories by the longest diameter of the largest lesion (CAMELYON17): ITC = isolated "
    "tumour cells (at most 0.2 mm), micro-metastasis (over 0.2 mm, at most 2 mm), "
    "macro-metastasis (over 2 mm), at the cut-offs of the run (--itc-mm, --micro-mm)."
)
PICTURES = {
    "heatmap": "Heatmap of {slide}: the probability of tumour per tile (colour bar) over the "
    "slide, the tissue outline (blue) and the lesion outlines (green); axes and scale bar in mm.",
    "thumbnail": "Thumbnail of {slide}: the slide as scanned, at low resolution.",
}


def _category(value: Any) -> str:
    return CATEGORIES.get(value, str(value)) if isinstance(value, str) and value else ""


def _context(table: pd.DataFrame, out_dir: Path, stages: pd.DataFrame | None) -> dict[str, Any]:
    shown = table.reindex(columns=COLUMNS)
    shown["category"] = shown["category"].map(_category).where(shown["category"].notna(), None)
    slides = [
        {
            "name": str(row["slide"]),
            "category": _category(row["category"]),
            "pictures": [
                {"file": f"{row['slide']}/{name}.png", "caption": text.format(slide=row["slide"])}
                for name, text in PICTURES.items()
                if (out_dir / str(row["slide"]) / f"{name}.png").is_file()
            ],
        }
        for _, row in table.iterrows()
        if row["status"] == "ok"
    ]
    patients = None
    if stages is not None and len(stages):
        patients = frame_table(stages[list(PATIENT_HEADINGS)])[1]
    return {
        "title": "Whole-slide analysis",
        "notice": NOTICE,
        "category_note": CATEGORY_NOTE,
        "headings": list(HEADINGS.items()),
        "rows": frame_table(shown)[1],
        "row_classes": ["failed" if s == "failed" else "" for s in table["status"]],
        "patient_headings": list(PATIENT_HEADINGS.items()),
        "stages": patients,
        "slides": slides,
    }


def write_report(
    table: pd.DataFrame,
    out_dir: Path,
    stages: pd.DataFrame | None = None,
    warning: str | None = None,
) -> Path:
    """``report.html`` of a folder run, under the model's ``warning`` where it has one."""
    context = _context(table, out_dir, stages)
    return write_page(out_dir / "report.html", "slides.html", warning=warning, **context)
