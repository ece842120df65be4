"""``report.html`` of a folder run: the table, patients' pN stages, and each slide's thumbnail and
heatmap (the template ``slides.html`` of :mod:`metastasis.reports.html`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from metastasis.reports.html import frame_table, write_page

NOTICE = (
    "Research use only: these maps, sizes, categories and stages come from a patch classifier "
    "and are not a diagnosis."
)
COLUMNS = ["slide", "status", "category", "largest_diameter_mm", "tumour_area_mm2", "lesions",
           "tissue_area_mm2", "tiles_classified", "tiles_failed", "level", "mpp",
           "reason"]  # fmt: skip


def _context(table: pd.DataFrame, out_dir: Path, stages: pd.DataFrame | None) -> dict[str, Any]:
    shown = table.reindex(columns=COLUMNS)
    slides = [
        {
            "name": str(row["slide"]),
            "category": row["category"] if isinstance(row["category"], str) else "",
            "images": [
                name
                for name in ("heatmap", "thumbnail")
                if (out_dir / str(row["slide"]) / f"{name}.png").is_file()
            ],
        }
        for _, row in table.iterrows()
        if row["status"] == "ok"
    ]
    patients = None
    if stages is not None and len(stages):
        patients = frame_table(stages[["patient", "slides", "categories", "stage"]])[1]
    return {
        "title": "Whole-slide analysis",
        "notice": NOTICE,
        "columns": COLUMNS,
        "rows": frame_table(shown)[1],
        "row_classes": ["failed" if s == "failed" else "" for s in table["status"]],
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
