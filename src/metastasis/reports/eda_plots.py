"""Presentation of the EDA report, pure (no files): figures and the HTML page.

Figures: arrays (and an optional ``ax``) in, a matplotlib ``Figure`` out, object-oriented API
only (no ``pyplot``: no global state, no display). Classes are keyed by name (``"0"``, ``"1"``,
``"unlabelled"``) and always drawn in the same colours. :func:`render_html`: the JSON-ready
result of :func:`metastasis.reports.eda.write_eda_report` in, the page's text out.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from metastasis.metrics.image_stats import HUE_MIN_SATURATION

__all__ = [
    "CLASS_COLOURS",
    "class_label",
    "plot_centre_vs_ring",
    "plot_class_balance",
    "plot_groups",
    "plot_patch_distributions",
    "plot_pca_map",
    "plot_pixel_histograms",
    "plot_thumbnails",
    "render_html",
]

CLASS_COLOURS = {"0": "#2b7bba", "1": "#d7301f", "unlabelled": "#7f7f7f"}
CLASS_NAMES = {"0": "0 normal", "1": "1 tumour", "unlabelled": "unlabelled"}


def class_label(name: str) -> str:
    return CLASS_NAMES.get(name, name)


def _colour(name: str, k: int) -> str:
    return CLASS_COLOURS.get(name, f"C{k + 2}")


def _figure_and_axes(
    ax: Axes | None, figsize: tuple[float, float] = (5.0, 3.6)
) -> tuple[Figure, Axes]:
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot()
    root = ax.get_figure(root=True)
    if not isinstance(root, Figure):
        raise ValueError("ax must belong to a Figure")
    return root, ax


def plot_class_balance(counts: Mapping[str, Mapping[str, int]], ax: Axes | None = None) -> Figure:
    """Bars of patches per class, grouped by split, each labelled with count and percentage."""
    fig, ax = _figure_and_axes(ax, figsize=(max(4.0, 2.2 * len(counts) + 1.5), 3.6))
    classes = sorted({c for per_split in counts.values() for c in per_split})
    width = 0.8 / max(len(classes), 1)
    top = max((v for per in counts.values() for v in per.values()), default=0)
    for k, cls in enumerate(classes):
        xs, heights = [], []
        for i, per_split in enumerate(counts.values()):
            xs.append(i - 0.4 + width * (k + 0.5))
            heights.append(per_split.get(cls, 0))
        bars = ax.bar(xs, heights, width, color=_colour(cls, k), label=class_label(cls))
        for bar, split_counts in zip(bars, counts.values()):
            total = sum(split_counts.values())
            h = bar.get_height()
            pct = f"\n{100 * h / total:.1f}%" if total else ""
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                h,
                f"{int(h):,}{pct}",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.set_xticks(range(len(counts)), labels=list(counts))
    ax.set_ylim(0, top * 1.25 + 1)
    ax.set(xlabel="split", ylabel="patches")
    ax.set_title("Class balance")
    ax.legend(loc="upper right", fontsize=8)
    return fig


_CELL, _GAP, _CAPTION = 96, 6, 16  # thumbnail grid: pixels per patch, between, above


def plot_thumbnails(
    images: Sequence[np.ndarray | None],
    captions: Sequence[str] = (),
    ncols: int = 8,
    outline_centre: bool = False,
) -> Figure:
    """A grid of patches (up to 96x96, one mosaic image: fast for many) with a caption above
    each; ``None`` leaves a cell empty but keeps its caption (e.g. "unreadable").
    ``outline_centre`` outlines each patch's central third (the 32x32 label region)."""
    n = max(len(images), 1)
    ncols = max(1, min(ncols, max(n, 4)))  # at least 4 cells wide: room for the captions
    nrows = -(-n // ncols)
    step_x, step_y = _CELL + 2 + _GAP, _CELL + 2 + _GAP + _CAPTION  # 2: the frame
    mosaic = np.full((nrows * step_y, ncols * step_x - _GAP, 3), 255, np.uint8)
    for k, img in enumerate(images):
        if img is None:
            continue
        y, x = (k // ncols) * step_y + _CAPTION, (k % ncols) * step_x
        h, w = min(img.shape[0], _CELL), min(img.shape[1], _CELL)
        mosaic[y - 1 : y + h + 1, x : x + w + 2] = 160  # a thin grey frame
        mosaic[y : y + h, x + 1 : x + w + 1] = np.asarray(img)[:h, :w, :3]
        if outline_centre:
            top, left, size = y + h // 3, x + 1 + w // 3, w // 3
            for rr, cc in (
                (slice(top, top + 2), slice(left, left + size)),
                (slice(top + size - 2, top + size), slice(left, left + size)),
                (slice(top, top + size), slice(left, left + 2)),
                (slice(top, top + size), slice(left + size - 2, left + size)),
            ):
                mosaic[rr, cc] = (0, 229, 255)
    fig = Figure(figsize=(mosaic.shape[1] / 72, mosaic.shape[0] / 72))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for k, caption in enumerate(captions[: len(images)]):
        top, middle = (k // ncols) * step_y + _CAPTION - 3, (k % ncols) * step_x + _CELL / 2 + 1
        ax.text(middle, top, caption, ha="center", va="bottom", fontsize=6.5, clip_on=True)
    return fig


def plot_groups(
    groups: Sequence[Sequence[np.ndarray | None]],
    captions: Sequence[Sequence[str]],
    per_row: int = 4,
) -> Figure:
    """One row per group of related patches (duplicates, near-duplicates): at most ``per_row``
    of each group, rows padded with empty cells."""
    images: list[np.ndarray | None] = []
    texts: list[str] = []
    for group, caps in zip(groups, captions):
        shown = list(group[:per_row])
        images += shown + [None] * (per_row - len(shown))
        texts += list(caps[:per_row]) + [""] * (per_row - len(shown))
    return plot_thumbnails(images, texts, ncols=per_row)


_HIST_TITLES = {
    "grey": ("Brightness (grey level)", "grey level (0 black, 255 white)"),
    "saturation": ("Saturation", "HSV saturation"),
    "hue": (f"Hue (pixels with saturation >= {HUE_MIN_SATURATION:g})", "hue (degrees)"),
}


def plot_pixel_histograms(
    densities: Mapping[str, Mapping[str, np.ndarray]], bins: int = 64
) -> Figure:
    """Pixel-level distributions per class: ``densities[class][channel]`` = 256 bin fractions
    for channels grey (levels 0-255), saturation (0-1) and hue (0-1, shown in degrees), merged
    into ``bins`` bins for display."""
    channels = [c for c in _HIST_TITLES if any(c in d for d in densities.values())]
    fig = Figure(figsize=(4.2 * len(channels), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(channels)))
    for ax, channel in zip(axes, channels):
        top = {"grey": 256.0, "hue": 360.0}.get(channel, 1.0)
        edges = np.linspace(0, top, bins + 1)
        for k, (cls, per_channel) in enumerate(densities.items()):
            if channel in per_channel:
                y = np.asarray(per_channel[channel], dtype=np.float64).reshape(bins, -1).sum(1)
                ax.stairs(y, edges, fill=True, alpha=0.25, color=_colour(cls, k))
                ax.stairs(y, edges, color=_colour(cls, k), label=class_label(cls), linewidth=1.2)
        title, xlabel = _HIST_TITLES[channel]
        ax.set(xlabel=xlabel, ylabel="fraction of pixels", xlim=(0, top))
        ax.set_title(title)
        ax.legend(fontsize=7)
    return fig


def plot_patch_distributions(
    values: Mapping[str, Mapping[str, np.ndarray]],
    panels: Sequence[tuple[str, str, float | None, bool]],
) -> Figure:
    """Per-patch distributions per class (density histograms, one colour per class).

    ``values[class][name]`` is one value per patch; ``panels`` lists ``(name, title, threshold
    or None, log10 x axis)``; a threshold is drawn as a dashed line."""
    fig = Figure(figsize=(3.6 * len(panels), 3.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, title, threshold, log) in zip(axes, panels):
        arrays = [np.asarray(v[name], dtype=np.float64) for v in values.values()]
        data = [np.log10(1 + a) if log else a for a in arrays]
        finite = np.concatenate([d[np.isfinite(d)] for d in data]) if data else np.zeros(0)
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 41)
        for k, (cls, d) in enumerate(zip(values, data)):
            if d.size:
                ax.hist(
                    d,
                    bins=bins,
                    density=True,
                    histtype="stepfilled",
                    alpha=0.3,
                    color=_colour(cls, k),
                    edgecolor=_colour(cls, k),
                    label=class_label(cls),
                )
        if threshold is not None:
            ax.axvline(
                np.log10(1 + threshold) if log else threshold,
                color="0.3",
                linestyle="--",
                linewidth=1,
                label="flag threshold",
            )
        ax.set(xlabel=f"log10(1 + {name})" if log else name, ylabel="density")
        ax.set_title(title)
        ax.legend(fontsize=7)
    return fig


def plot_centre_vs_ring(
    values: Mapping[str, Mapping[str, np.ndarray]], panels: Sequence[tuple[str, str]]
) -> Figure:
    """Per-patch difference centre (label region) minus ring, per class, for each
    ``(statistic, title)``: ``values[class][f"centre_{stat}"]`` and ``[f"ring_{stat}"]``."""
    fig = Figure(figsize=(3.6 * len(panels), 3.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (stat, title) in zip(axes, panels):
        diffs = {
            c: np.asarray(v[f"centre_{stat}"], np.float64) - np.asarray(v[f"ring_{stat}"])
            for c, v in values.items()
        }
        finite = np.concatenate(list(diffs.values())) if diffs else np.zeros(0)
        lim = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
        bins = np.linspace(-lim, lim, 41) if lim > 0 else np.linspace(-1, 1, 41)
        for k, (cls, d) in enumerate(diffs.items()):
            if d.size:
                ax.hist(
                    np.clip(d, bins[0], bins[-1]),
                    bins=bins,
                    density=True,
                    histtype="stepfilled",
                    alpha=0.3,
                    color=_colour(cls, k),
                    edgecolor=_colour(cls, k),
                    label=f"{class_label(cls)} (mean {d.mean():+.3g})",
                )
        ax.axvline(0, color="0.3", linewidth=1)
        ax.set(xlabel="centre - ring", ylabel="density")
        ax.set_title(title)
        ax.legend(fontsize=7)
    return fig


def plot_pca_map(
    coords: np.ndarray,
    classes: Sequence[str],
    explained: Sequence[float] = (),
    ax: Axes | None = None,
) -> Figure:
    """2-D map of patches (e.g. the first two principal components), one colour per class;
    points are drawn in the order given (shuffle them so that no class hides another)."""
    fig, ax = _figure_and_axes(ax, figsize=(6.0, 5.0))
    xy = np.asarray(coords, dtype=np.float64)
    names = [str(c) for c in classes]
    order = sorted(set(names))
    colours = [_colour(n, order.index(n)) for n in names]
    ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.45, c=colours, linewidths=0)
    for k, name in enumerate(order):  # legend entries only
        count = f"{names.count(name):,}"
        ax.scatter([], [], s=12, color=_colour(name, k), label=f"{class_label(name)} ({count})")
    labels = [
        f"PC{i + 1}" + (f" ({100 * e:.1f}% of variance)" if e else "")
        for i, e in enumerate([*explained, 0, 0][:2])
    ]
    ax.set(xlabel=labels[0], ylabel=labels[1])
    ax.set_title("Patches by colour and texture (PCA)")
    ax.legend(markerscale=3, fontsize=8)
    return fig


# ----------------------------------------------------------------------------- the HTML page

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
