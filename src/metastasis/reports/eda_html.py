"""The EDA report's HTML page, pure (no files): the JSON-ready result of
:func:`metastasis.reports.eda.write_eda_report` in, the page's text out.

Figures are referenced by their file names (``{"file", "caption"}`` entries), beside the page.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from metastasis.reports.eda_plots import class_label

__all__ = ["render_html"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1200px; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #ddd; padding-bottom: .4rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #eee; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: right; vertical-align: top; }
th { background: #f4f4f4; text-align: left; } td.text { text-align: left; max-width: 38rem; }
figure { margin: .6rem 0 1.2rem; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; } .ok { color: #1a7f37; } .bad { color: #b42318; }
p.note { font-size: .9rem; color: #555; } nav a { margin-right: 1rem; }
""".strip()


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}"
    return html.escape(str(v))


def _cell(v: Any) -> str:
    return f'<td class="text">{_fmt(v)}</td>' if isinstance(v, str) else f"<td>{_fmt(v)}</td>"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>\n" for row in rows)
    return f"<table><tr>{head}</tr>\n{body}</table>"


def _figure(f: Mapping[str, str] | None) -> str:
    if not f:
        return ""
    src, cap = html.escape(f["file"], quote=True), html.escape(f["caption"])
    return f'<figure><img src="{src}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def _findings(findings: Sequence[Mapping[str, Any]]) -> list[str]:
    if not findings:
        return ['<p class="ok">No problems found.</p>']
    rows = [
        [f["kind"], f["count"], f["description"], ", ".join(f["examples"][:4])] for f in findings
    ]
    return [_table(["problem", "count", "what", "examples"], rows)] + [
        _figure(f.get("figure")) for f in findings
    ]


def _balance_section(cb: Mapping[str, Any]) -> list[str]:
    classes = sorted({c for s in cb["splits"].values() for c in s["counts"]})
    rows = [
        [
            name,
            *[
                f"{s['counts'][c]:,} ({_fmt(s['percent'][c])}%)" if c in s["counts"] else ""
                for c in classes
            ],
            s["n"],
        ]
        for name, s in cb["splits"].items()
    ]
    header = ["split", *[class_label(c) for c in classes], "total"]
    return ['<h2 id="balance">1. Class balance</h2>', _table(header, rows), _figure(cb["figure"])]


def _integrity_section(integ: Mapping[str, Any]) -> list[str]:
    verdict = '<b class="ok">no problems</b>' if integ["ok"] else '<b class="bad">problems</b>'
    out = [
        '<h2 id="integrity">2. Integrity</h2>',
        f"<p>What <code>metastasis check</code> finds, counted over every patch of every split:"
        f" {verdict}.</p>",
    ]
    for name, findings in integ["splits"].items():
        out += [f"<h3>Split {html.escape(name)}</h3>", *_findings(findings)]
    if len(integ["splits"]) > 1:
        out += ["<h3>Across splits</h3>", *_findings(integ["across_splits"])]
    nd = integ["near_duplicates"]
    row = [nd["groups"], nd["patches"], nd["extra_copies"], nd["label_conflicts"]]
    return [
        *out,
        f"<h3>Near-duplicates in {html.escape(nd['split'])}</h3>",
        f"<p>{html.escape(nd['method'])}, over {nd['n_hashed']:,} patches (one per exact pixel "
        "content; blank and background-only patches left out).</p>",
        _table(["groups", "patches in groups", "extra copies", "groups with both labels"], [row]),
        *[f"<p>{html.escape(' = '.join(g['patches']))}</p>" for g in nd["examples"][:4]],
        _figure(nd.get("figure")),
    ]


def _statistics_section(ims: Mapping[str, Any], split: str) -> list[str]:
    per = ims["classes"]
    names = list(per)
    rows: list[list[Any]] = [["patches", *[per[c]["n"] for c in names]]]
    for ch in ("red", "green", "blue", "grey", "hue", "saturation", "value"):
        unit = " (degrees)" if ch == "hue" else " (0-1)" if ch in ("saturation", "value") else ""
        cells = [f"{_fmt(per[c][ch]['mean'])} ± {_fmt(per[c][ch]['std'])}" for c in names]
        rows.append([f"{ch}{unit}: mean ± spread", *cells])
    for k in ("background_fraction", "dark_fraction"):
        rows.append([k.replace("_", " "), *[per[c][k] for c in names]])
    rows.append(
        [
            "focus (median variance of Laplacian)",
            *[per[c]["laplacian_var"]["median"] for c in names],
        ]
    )
    flags = [[k, f["rule"], f["count"], *f["per_class"].values()] for k, f in ims["flags"].items()]
    labels = [class_label(c) for c in names]
    return [
        f'<h2 id="stats">3. Image statistics by class ({html.escape(split)})</h2>',
        _table(["statistic", *labels], rows),
        *[_figure(f) for f in ims["figures"]],
        "<h3>Flagged patches</h3>",
        _table(["flag", "rule", "count", *labels], flags),
        *[_figure(f.get("figure")) for f in ims["flags"].values()],
    ]


def render_html(r: Mapping[str, Any]) -> str:
    """The self-describing page of an EDA result (the JSON-ready dict that eda.json holds);
    figures are referenced by their file names, beside the page."""
    lr, sm, mp = r["label_region"], r["samples"], r["map"]
    region = [
        [f"{stat} [{c}]", v["centre"], v["ring"], v["difference"]]
        for c, per in lr["classes"].items()
        for stat, v in per.items()
    ]
    parts = [
        f"<h1>Exploratory data analysis: {html.escape(r['data'])}</h1>",
        f"<p>{html.escape(r['layout'])} layout; splits "
        f"{html.escape(', '.join(r['class_balance']['splits']))}; image statistics on "
        f"<b>{html.escape(r['analysed_split'])}</b> ({r['n_analysed']:,} usable patches); "
        f"written in {r['seconds']} s.</p>",
        '<nav><a href="#balance">1 Class balance</a><a href="#integrity">2 Integrity</a>'
        '<a href="#stats">3 Image statistics</a><a href="#region">4 Label region</a>'
        '<a href="#samples">5 Samples</a><a href="#map">6 Map</a></nav>',
        f'<p class="note">Exact: {html.escape(r["sampling"]["exact"])}. Sampled: '
        f"{html.escape(r['sampling']['sampled'])} (seed {r['seed']}).</p>",
        *_balance_section(r["class_balance"]),
        *_integrity_section(r["integrity"]),
        *_statistics_section(r["image_statistics"], r["analysed_split"]),
        '<h2 id="region">4. The label region: the central 32x32 against the ring around it</h2>',
        "<p>The label says whether tumour lies in the central 32x32 pixels; the ring (the rest "
        "of the patch) is context. Means per class:</p>",
        _table(["statistic [label]", "centre", "ring", "centre - ring"], region),
        *[_figure(f) for f in lr["figures"]],
        '<h2 id="samples">5. Sample patches</h2>',
        '<p class="note">Typical and atypical: distance from the class mean in standard '
        "deviations (root mean square z-score) over "
        f"{html.escape(', '.join(sm['features']))}.</p>",
        *[_figure(f) for f in sm["figures"]],
        '<h2 id="map">6. A map of the patches</h2>',
        f"<p>{html.escape(mp['method'])} ({html.escape(', '.join(mp.get('features', [])))}): "
        f"fitted on {mp.get('fitted_on', 0):,} patches, {mp.get('plotted', 0):,} drawn.</p>",
        _figure(mp.get("figure")),
        "<h2>Thresholds</h2>",
        _table(["name", "value"], [[k, v] for k, v in r["thresholds"].items()]),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>EDA {html.escape(r['data'])}</title>\n<style>\n{_CSS}\n</style>\n</head>\n"
        "<body>\n" + "\n".join(p for p in parts if p) + "\n</body>\n</html>\n"
    )
