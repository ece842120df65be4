"""``report.html`` of a folder run: the table, and each slide's thumbnail and heatmap."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from metastasis.io import atomic_write_text

NOTICE = (
    "Research use only: these maps, sizes, categories and stages come from a patch classifier "
    "and are not a diagnosis."
)
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
tr.failed td { background: #fde2e2; }
.notice { background: #fff4d6; border: 1px solid #e0c060; padding: 0.6em; }
.slide { display: inline-block; vertical-align: top; margin: 0.5em; width: 46%; }
.slide img { max-width: 100%; border: 1px solid #ddd; }
"""


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"  # NaN -> empty
    return html.escape("" if value is None else str(value))


def render_report(table: pd.DataFrame, out_dir: Path, stages: pd.DataFrame | None = None) -> str:
    cols = ["slide", "status", "category", "largest_diameter_mm", "tumour_area_mm2", "lesions",
            "tissue_area_mm2", "tiles_classified", "tiles_failed", "level", "mpp",
            "reason"]  # fmt: skip
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for _, row in table.iterrows():
        cls = ' class="failed"' if row["status"] == "failed" else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_cell(row[c])}</td>" for c in cols) + "</tr>")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Slides</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Whole-slide analysis</h1>",
        f"<p class='notice'>{html.escape(NOTICE)}</p>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>",
    ]
    if stages is not None and len(stages):
        rows = "".join(
            f"<tr><td>{_cell(r.patient)}</td><td>{_cell(r.slides)}</td>"
            f"<td>{_cell(r.categories)}</td><td>{_cell(r.stage)}</td></tr>"
            for r in stages.itertuples()
        )
        parts.append(
            "<h2>Patients (pN stage, CAMELYON17 rules)</h2><table><thead><tr><th>patient</th>"
            f"<th>slides</th><th>categories</th><th>stage</th></tr></thead><tbody>{rows}</tbody>"
            "</table>"
        )
    parts.append("<h2>Slides</h2>")
    for _, row in table.iterrows():
        if row["status"] != "ok":
            continue
        sid = html.escape(str(row["slide"]), quote=True)
        figs = "".join(
            f"<img src='{sid}/{name}.png' alt='{name} of {sid}' loading='lazy'>"
            for name in ("heatmap", "thumbnail")
            if (out_dir / str(row["slide"]) / f"{name}.png").is_file()
        )
        parts.append(f"<div class='slide'><h3>{sid}: {_cell(row['category'])}</h3>{figs}</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(table: pd.DataFrame, out_dir: Path, stages: pd.DataFrame | None = None) -> Path:
    path = out_dir / "report.html"
    atomic_write_text(path, render_report(table, out_dir, stages))
    return path
