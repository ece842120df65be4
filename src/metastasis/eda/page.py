"""The EDA report's HTML page, pure (no files): the JSON-ready result of
:func:`metastasis.eda.report.write_eda_report` in, the page's text out.

The page is the template ``eda.html`` of :mod:`metastasis.reports.html` (autoescaped, the one
stylesheet inlined); this module only shapes the result into its tables. Figures are referenced
by their file names (``{"file", "caption"}`` entries), beside the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from metastasis.eda.figures import class_label
from metastasis.reports.html import render_page, significant

__all__ = ["render_html"]

Table = dict[str, list[Any]]  # {"header": [...], "rows": [[...], ...]}


def _balance(cb: Mapping[str, Any]) -> Table:
    classes = sorted({c for s in cb["splits"].values() for c in s["counts"]})
    rows = [
        [
            name,
            *[
                f"{s['counts'][c]:,} ({significant(s['percent'][c])}%)" if c in s["counts"] else ""
                for c in classes
            ],
            s["n"],
        ]
        for name, s in cb["splits"].items()
    ]
    return {"header": ["split", *[class_label(c) for c in classes], "total"], "rows": rows}


def _findings(
    heading: str, findings: Sequence[Mapping[str, Any]]
) -> tuple[str, list[list[Any]], list[Any]]:
    rows = [
        [f["kind"], f["count"], f["description"], ", ".join(f["examples"][:4])] for f in findings
    ]
    return heading, rows, [f["figure"] for f in findings if f.get("figure")]


def _integrity(integ: Mapping[str, Any]) -> list[tuple[str, list[list[Any]], list[Any]]]:
    out = [_findings(f"Split {name}", found) for name, found in integ["splits"].items()]
    if len(integ["splits"]) > 1:
        out.append(_findings("Across splits", integ["across_splits"]))
    return out


def _statistics(ims: Mapping[str, Any]) -> Table:
    per = ims["classes"]
    names = list(per)
    rows: list[list[Any]] = [["patches", *[per[c]["n"] for c in names]]]
    for ch in ("red", "green", "blue", "grey", "hue", "saturation", "value"):
        unit = " (degrees)" if ch == "hue" else " (0-1)" if ch in ("saturation", "value") else ""
        cells = [
            f"{significant(per[c][ch]['mean'])} ± {significant(per[c][ch]['std'])}" for c in names
        ]
        rows.append([f"{ch}{unit}: mean ± spread", *cells])
    for k in ("background_fraction", "dark_fraction"):
        rows.append([k.replace("_", " "), *[per[c][k] for c in names]])
    median = [per[c]["laplacian_var"]["median"] for c in names]
    rows.append(["focus (median variance of Laplacian)", *median])
    return {"header": ["statistic", *[class_label(c) for c in names]], "rows": rows}


def _flags(ims: Mapping[str, Any]) -> Table:
    labels = [class_label(c) for c in ims["classes"]]
    rows = [[k, f["rule"], f["count"], *f["per_class"].values()] for k, f in ims["flags"].items()]
    return {"header": ["flag", "rule", "count", *labels], "rows": rows}


def render_html(r: Mapping[str, Any]) -> str:
    """The self-describing page of an EDA result (the JSON-ready dict that eda.json holds);
    figures are referenced by their file names, beside the page."""
    region = [
        [f"{stat} [{c}]", v["centre"], v["ring"], v["difference"]]
        for c, per in r["label_region"]["classes"].items()
        for stat, v in per.items()
    ]
    return render_page(
        "eda.html",
        title=f"Exploratory data analysis: {r['data']}",
        r=r,
        splits=", ".join(r["class_balance"]["splits"]),
        balance=_balance(r["class_balance"]),
        integrity=_integrity(r["integrity"]),
        statistics=_statistics(r["image_statistics"]),
        flags=_flags(r["image_statistics"]),
        region=region,
        thresholds=[[k, v] for k, v in r["thresholds"].items()],
    )
