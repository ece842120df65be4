"""`metastasis eda`: know the data before training on it.

:func:`write_eda_report` writes into one folder ``eda.json`` (every number shown), the PNG
figures and ``report.html`` (which shows them by relative name). Sections: class balance per
split; integrity (the `check` report, plus near-duplicates by perceptual hash); image statistics
by class with blank, background-only and blurry patches flagged; the label region (central
32x32) against the ring around it; random, most typical and most atypical patches per class; a
2-D PCA map of colour/texture features.

It reads the decoded cache in chunks, so memory stays flat for the 220,025-patch Kaggle set.
Counts, fractions, means, spreads and histograms are exact over every usable patch of the
analysed split; only the pictures (thumbnails, map points) are samples, as the report says.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image
from tqdm.auto import tqdm

from metastasis.data.cache import DUPLICATE_PIXELS, CachedSplit, duplicate_groups, open_cache
from metastasis.data.checks import CheckReport, check_dataset
from metastasis.data.layouts import Finding, open_layout
from metastasis.io import atomic_write_json, atomic_write_text
from metastasis.metrics import image_stats as st
from metastasis.metrics.plots import save_figure
from metastasis.reports import eda_plots as plots

__all__ = ["SplitAnalysis", "analyse_split", "write_eda_report"]

CHUNK = 512  # patches read from the memory map at a time
RANDOM_PER_CLASS = 24  # random patches shown per class
EXTREMES_PER_CLASS = 16  # most typical / most atypical patches shown per class
CENTRE_PER_CLASS = 8  # patches shown with the label region outlined
FLAG_EXAMPLES = 16  # thumbnails per quality flag
GROUP_EXAMPLES = 8  # thumbnails (or groups of duplicates) per integrity finding
MAP_SAMPLE = 5000  # points drawn on the PCA map
COLOUR_FEATURES = [
    f"{c}_{s}"
    for c in ("red", "green", "blue", "grey", "saturation", "value")
    for s in ("mean", "std")
]
MAP_FEATURES = [*COLOUR_FEATURES, "background_fraction", "dark_fraction", "log_laplacian_var"]
REGION_STATS = (
    ("grey", "Brightness (grey level)"),
    ("saturation", "Saturation"),
    ("dark", "Dark (nucleus-like) fraction"),
    ("background", "Background fraction"),
    ("laplacian_var", "Focus / texture (Laplacian var.)"),
)


@dataclass
class SplitAnalysis:
    """Per-patch statistics of the usable patches of one cached split (row ``i`` of ``stats``
    is cache row ``rows[i]``, of class ``classes[group[i]]``)."""

    cached: CachedSplit
    rows: np.ndarray
    classes: list[str]  # ["0", "1"], or ["unlabelled"]
    group: np.ndarray
    stats: pd.DataFrame
    flags: dict[str, np.ndarray]
    histograms: st.PixelHistograms
    hashes: np.ndarray

    def names(self, idx: np.ndarray) -> list[str]:
        return [str(s) for s in self.cached.sources[self.rows[idx]]]

    def images(self, idx: np.ndarray) -> list[np.ndarray | None]:
        return [np.asarray(self.cached.images[r]) for r in self.rows[idx]]

    def captions(self, idx: np.ndarray) -> list[str]:
        return [
            _short(f"{n} [{self.classes[g]}]") for n, g in zip(self.names(idx), self.group[idx])
        ]


def analyse_split(cached: CachedSplit, progress: bool = True) -> SplitAnalysis:
    """One pass over the usable patches, in chunks of the memory map: per-patch statistics,
    pixel histograms per class and perceptual hashes."""
    rows = cached.usable_indices()
    classes = ["0", "1"] if cached.labelled else ["unlabelled"]
    group = cached.labels[rows].astype(np.int64) if cached.labelled else np.zeros(len(rows), int)
    hist = st.PixelHistograms(len(classes))
    parts = [pd.DataFrame(st.patch_statistics(np.zeros((0, 96, 96, 3), np.uint8)))]
    hashes = [np.zeros(0, np.uint64)]
    desc = f"eda {cached.meta['split']}"
    with tqdm(total=len(rows), unit="patch", desc=desc, disable=not progress, leave=False) as bar:
        for s in range(0, len(rows), CHUNK):
            images = np.asarray(cached.images[rows[s : s + CHUNK]])
            parts.append(pd.DataFrame(st.patch_statistics(images, hist, group[s : s + CHUNK])))
            hashes.append(st.perceptual_hashes(images))
            bar.update(len(images))
    stats = pd.concat(parts, ignore_index=True)
    stats["log_laplacian_var"] = np.log10(1 + stats["laplacian_var"])
    flags = st.quality_flags({k: stats[k].to_numpy() for k in stats.columns})
    return SplitAnalysis(cached, rows, classes, group, stats, flags, hist, np.concatenate(hashes))


def write_eda_report(
    data: str | Path,
    out: str | os.PathLike[str],
    split: str | None = None,
    cache_root: Path | None = None,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the EDA report of ``data`` into ``out``; return what ``eda.json`` holds.

    Class balance and integrity cover every split (or only ``split``); image statistics cover
    ``split``, else ``train`` when present, else the first split.
    """
    start = time.perf_counter()
    report = check_dataset(data, split, cache_root, progress=progress)
    layout = open_layout(data)
    cached = {
        s.split: open_cache(layout.listing(s.split), cache_root, progress=False)
        for s in report.splits
    }
    target = split or ("train" if "train" in cached else next(iter(cached)))
    a = analyse_split(cached[target], progress)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = len(a.rows)
    result: dict[str, Any] = {
        "data": str(data),
        "layout": report.layout,
        "analysed_split": target,
        "n_analysed": n,
        "seed": seed,
        "thresholds": st.thresholds(),
        "sampling": {
            "exact": "class counts and integrity findings over every patch of every split; "
            f"statistics, histograms, flags and near-duplicates over all {n:,} usable patches "
            f"of '{target}'",
            "sampled": f"thumbnails ({RANDOM_PER_CLASS} random, {EXTREMES_PER_CLASS} most "
            f"typical and atypical, {CENTRE_PER_CLASS} outlined per class; up to "
            f"{FLAG_EXAMPLES} per flag and {GROUP_EXAMPLES} per finding); the PCA map is "
            f"fitted on every patch, {min(MAP_SAMPLE, n):,} random ones are drawn",
        },
        "class_balance": _class_balance(report, folder),
        "integrity": _integrity(report, cached, a, folder),
        "image_statistics": _image_statistics(a, folder),
        "label_region": _label_region(a, rng, folder),
        "samples": _samples(a, rng, folder),
        "map": _map(a, rng, folder),
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    result = _plain(result)
    atomic_write_json(folder / "eda.json", result)
    atomic_write_text(folder / "report.html", plots.render_html(result))
    return result


def _save(folder: Path, name: str, fig: Figure, caption: str) -> dict[str, str]:
    save_figure(fig, folder / name, dpi=100)
    return {"file": name, "caption": caption}


def _short(text: str, width: int = 30) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def _class_balance(report: CheckReport, folder: Path) -> dict[str, Any]:
    splits = {}
    for s in report.splits:
        total = sum(s.class_counts.values())
        percent = {k: 100 * v / total for k, v in s.class_counts.items()} if total else {}
        splits[s.split] = {"n": total, "counts": s.class_counts, "percent": percent}
    fig = plots.plot_class_balance({s.split: s.class_counts for s in report.splits})
    return {"splits": splits, "figure": _save(folder, "class_balance.png", fig, "Class balance")}


def _integrity(
    report: CheckReport, cached: dict[str, CachedSplit], a: SplitAnalysis, folder: Path
) -> dict[str, Any]:
    """The `check` findings (counted there, over every patch), each with thumbnails."""
    out: dict[str, Any] = {"ok": report.ok, "splits": {}, "across_splits": []}
    for s in report.splits:
        out["splits"][s.split] = [
            _finding(f, _thumbnails(cached[s.split], f), folder, f"{s.split}_{f.kind}")
            for f in s.findings
        ]
    for f in report.findings:  # across splits: examples "split/source = split/source"
        groups = [[n.partition("/") for n in ex.split(" = ")] for ex in f.examples]
        images = [[_by_source(cached.get(sp), src) for sp, _, src in g] for g in groups]
        captions = [[_short(sp + "/" + src) for sp, _, src in g] for g in groups]
        out["across_splits"].append(_finding(f, (images, captions), folder, f"across_{f.kind}"))
    out["near_duplicates"] = _near_duplicates(a, folder)
    return out


Thumbs = tuple[list[list[np.ndarray | None]], list[list[str]]]  # groups of images, captions


def _finding(f: Finding, thumbs: Thumbs, folder: Path, name: str) -> dict[str, Any]:
    entry = f.to_dict()
    groups, captions = thumbs[0][:GROUP_EXAMPLES], thumbs[1][:GROUP_EXAMPLES]
    if any(im is not None for g in groups for im in g):
        if all(len(g) == 1 for g in groups):  # single patches: one grid
            fig = plots.plot_thumbnails([g[0] for g in groups], [c[0] for c in captions])
        else:
            fig = plots.plot_groups(groups, captions)
        entry["figure"] = _save(folder, f"integrity_{name}.png", fig, f"{f.kind}: examples")
    return entry


def _thumbnails(c: CachedSplit, f: Finding) -> Thumbs:
    if f.kind == DUPLICATE_PIXELS:
        groups = duplicate_groups(c.digests[c.ok], c.sources[c.ok])[:GROUP_EXAMPLES]
        return [[_by_source(c, n) for n in g] for g in groups], [
            [_short(n) for n in g] for g in groups
        ]
    rows = np.flatnonzero(c.problems == f.kind)[:GROUP_EXAMPLES]
    root = Path(c.meta["source"])
    if len(rows):  # per-image problems (unreadable, wrong size or mode): read the file itself
        images = [[_by_source(c, str(c.sources[r]), from_file=True)] for r in rows]
        return images, [[_short(f"{c.sources[r]}: {c.details[r]}", 40)] for r in rows]
    names = [ex.split(" (")[0] for ex in f.examples[:GROUP_EXAMPLES]]  # index-level: file names
    return [[_read(_find_file(root, c.meta["split"], n))] for n in names], [
        [_short(n)] for n in names
    ]


def _by_source(c: CachedSplit | None, source: str, from_file: bool = False) -> np.ndarray | None:
    """A patch by its source name: from the cache, or from its file (rows the cache left out)."""
    if c is None:
        return None
    if from_file and c.meta["layout"] != "pcam-h5":
        return _read(Path(c.meta["source"]) / source)
    rows = np.flatnonzero(c.sources == source)
    return np.asarray(c.images[rows[0]]) if len(rows) else None


def _find_file(root: Path, split: str, name: str) -> Path | None:
    for folder in (root, root / split, root / "0", root / "1"):
        for candidate in (name, *(name + e for e in (".tif", ".png", ".jpg", ".jpeg"))):
            if (folder / candidate).is_file():
                return folder / candidate
    return None


def _read(path: Path | None) -> np.ndarray | None:
    """An image file as RGB, shrunk to at most 96x96 (None when it cannot be read)."""
    if path is None:
        return None
    try:
        with Image.open(path) as im:
            im.thumbnail((96, 96))
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _near_duplicates(a: SplitAnalysis, folder: Path) -> dict[str, Any]:
    """pHash near-duplicates among distinct pixel contents (one patch per exact digest: exact
    copies are `check`'s), without blank and background-only patches (glass looks alike)."""
    keep = np.zeros(len(a.rows), bool)
    keep[np.unique(a.cached.digests[a.rows], return_index=True)[1]] = True
    idx = np.flatnonzero(keep & ~a.flags["blank"] & ~a.flags["background_only"])
    groups = [
        idx[g] for g in st.near_duplicate_groups(a.hashes[idx], st.NEAR_DUPLICATE_MAX_DISTANCE)
    ]
    result: dict[str, Any] = {
        "split": a.cached.meta["split"],
        "method": f"64-bit pHash (as imagehash.phash), Hamming distance <= "
        f"{st.NEAR_DUPLICATE_MAX_DISTANCE}",
        "n_hashed": len(idx),
        "groups": len(groups),
        "patches": int(sum(len(g) for g in groups)),
        "extra_copies": int(sum(len(g) - 1 for g in groups)),
        "label_conflicts": sum(len(set(a.group[g])) > 1 for g in groups)
        if a.cached.labelled
        else None,
        "examples": [
            {"patches": a.names(g), "labels": [a.classes[k] for k in a.group[g]]}
            for g in groups[:GROUP_EXAMPLES]
        ],
    }
    if groups:
        shown = [g[:4] for g in groups[:GROUP_EXAMPLES]]
        fig = plots.plot_groups([a.images(g) for g in shown], [a.captions(g) for g in shown])
        result["figure"] = _save(folder, "near_duplicates.png", fig, "Near-duplicate groups")
    return result


def _by_class(a: SplitAnalysis) -> dict[str, dict[str, np.ndarray]]:
    return {
        c: {k: a.stats[k].to_numpy()[a.group == i] for k in a.stats.columns}
        for i, c in enumerate(a.classes)
    }


def _image_statistics(a: SplitAnalysis, folder: Path) -> dict[str, Any]:
    classes: dict[str, Any] = {}
    for i, c in enumerate(a.classes):
        s = a.stats[a.group == i]
        row: dict[str, Any] = {"n": len(s)}
        for ch in ("red", "green", "blue", "grey", "saturation", "value"):
            m, sd = st.pooled_mean_std(s[f"{ch}_mean"].to_numpy(), s[f"{ch}_std"].to_numpy())
            row[ch] = {"mean": m, "std": sd}
        row["hue"] = a.histograms.hue_summary(i)
        row["background_fraction"] = s["background_fraction"].mean()
        row["dark_fraction"] = s["dark_fraction"].mean()
        row["laplacian_var"] = {
            "median": s["laplacian_var"].median(),
            "mean": s["laplacian_var"].mean(),
        }
        classes[c] = row
    densities = {
        c: {ch: a.histograms.density(i, ch) for ch in st.HISTOGRAM_CHANNELS}
        for i, c in enumerate(a.classes)
    }
    panels = [
        ("grey_mean", "Mean brightness", None, False),
        ("saturation_mean", "Mean saturation", None, False),
        ("background_fraction", "Background fraction", st.BACKGROUND_ONLY_MIN_FRACTION, False),
        ("laplacian_var", "Focus (variance of Laplacian)", st.BLURRY_MAX_LAPLACIAN_VAR, True),
    ]
    figures = [
        _save(
            folder,
            "pixel_histograms.png",
            plots.plot_pixel_histograms(densities),
            "Pixel distributions per class (every pixel of every patch)",
        ),
        _save(
            folder,
            "patch_distributions.png",
            plots.plot_patch_distributions(_by_class(a), panels),
            "Per-patch distributions per class (every patch; dashed: flag thresholds)",
        ),
    ]
    flags: dict[str, Any] = {}
    for name, mask in a.flags.items():
        key = "laplacian_var" if name == "blurry" else "grey_std"  # most extreme first
        idx = np.flatnonzero(mask)
        idx = idx[np.argsort(a.stats[key].to_numpy()[idx], kind="stable")]
        flags[name] = {
            "rule": st.FLAG_RULES[name],
            "count": len(idx),
            "per_class": {c: int((a.group[idx] == i).sum()) for i, c in enumerate(a.classes)},
            "examples": a.names(idx[:FLAG_EXAMPLES]),
        }
        if len(idx):
            fig = plots.plot_thumbnails(
                a.images(idx[:FLAG_EXAMPLES]), a.captions(idx[:FLAG_EXAMPLES])
            )
            flags[name]["figure"] = _save(
                folder, f"flag_{name}.png", fig, f"{name}: {st.FLAG_RULES[name]}"
            )
    return {"classes": classes, "flags": flags, "figures": figures}


def _label_region(a: SplitAnalysis, rng: np.random.Generator, folder: Path) -> dict[str, Any]:
    classes: dict[str, Any] = {}
    for i, c in enumerate(a.classes):
        s = a.stats[a.group == i]
        classes[c] = {
            stat: {
                "centre": s[f"centre_{stat}"].mean(),
                "ring": s[f"ring_{stat}"].mean(),
                "difference": (s[f"centre_{stat}"] - s[f"ring_{stat}"]).mean(),
            }
            for stat, _ in REGION_STATS
        }
    fig = plots.plot_centre_vs_ring(_by_class(a), REGION_STATS)
    figures = [
        _save(folder, "centre_vs_ring.png", fig, "Centre (label region) minus ring, per patch")
    ]
    pick = np.concatenate(
        [
            _choice(rng, np.flatnonzero(a.group == i), CENTRE_PER_CLASS)
            for i in range(len(a.classes))
        ]
    )
    if len(pick):
        fig = plots.plot_thumbnails(a.images(pick), a.captions(pick), outline_centre=True)
        caption = "Random patches per class, the label region (central 32x32) outlined"
        figures.append(_save(folder, "centre_outlined.png", fig, caption))
    return {
        "centre": "rows and columns 32-63 (the central 32x32)",
        "ring": "the rest of the patch",
        "classes": classes,
        "figures": figures,
    }


def _choice(rng: np.random.Generator, members: np.ndarray, k: int) -> np.ndarray:
    return rng.choice(members, min(k, len(members)), replace=False) if len(members) else members


def _samples(a: SplitAnalysis, rng: np.random.Generator, folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"features": COLOUR_FEATURES, "classes": {}, "figures": []}
    for i, c in enumerate(a.classes):
        members = np.flatnonzero(a.group == i)
        if not len(members):
            continue
        distance = st.typicality(a.stats.loc[members, COLOUR_FEATURES].to_numpy())
        order = np.argsort(distance, kind="stable")
        picks = {
            "random": _choice(rng, members, RANDOM_PER_CLASS),
            "typical": members[order[:EXTREMES_PER_CLASS]],
            "atypical": members[order[::-1][:EXTREMES_PER_CLASS]],
        }
        dist = dict(zip(members, distance))
        out["classes"][c] = {
            kind: [{"patch": n, "distance": dist[k]} for n, k in zip(a.names(idx), idx)]
            for kind, idx in picks.items()
        }
        label = plots.class_label(c)
        captions = {
            "random": f"{label}: random patches",
            "typical": f"{label}: most typical (closest to the class mean colour)",
            "atypical": f"{label}: most atypical (farthest from it)",
        }
        for kind, idx in picks.items():
            fig = plots.plot_thumbnails(a.images(idx), [_short(n) for n in a.names(idx)])
            out["figures"].append(_save(folder, f"samples_{kind}_{c}.png", fig, captions[kind]))
    return out


def _map(a: SplitAnalysis, rng: np.random.Generator, folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = {
        "method": "PCA of standardised per-patch features",
        "features": MAP_FEATURES,
    }
    if len(a.rows) < 3:
        return {**result, "skipped": "fewer than 3 patches"}
    coords, ratio, loadings = st.pca_2d(a.stats[MAP_FEATURES].to_numpy())
    pick = rng.permutation(len(a.rows))[:MAP_SAMPLE]  # random order: no class hides the other
    fig = plots.plot_pca_map(coords[pick], [a.classes[g] for g in a.group[pick]], ratio.tolist())
    return {
        **result,
        "fitted_on": len(a.rows),
        "plotted": len(pick),
        "explained_variance_ratio": ratio,
        "loadings": {f"PC{k + 1}": dict(zip(MAP_FEATURES, loadings[k].round(3))) for k in range(2)},
        "figure": _save(folder, "pca_map.png", fig, f"PCA map of {len(pick):,} random patches"),
    }


def _plain(obj: Any) -> Any:
    """JSON-ready copy: numpy values to Python ones, NaN and infinities to None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
