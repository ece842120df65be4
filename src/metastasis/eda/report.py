"""`metastasis eda`: know the data before training on it.

:func:`write_eda_report` writes into one folder ``eda.json`` (every number shown), the PNG
figures, ``report.html`` (which shows them by relative name) and ``flagged.csv`` (the patches
to leave out of training, by id: :mod:`.flagged`). Sections: class balance per
split; integrity (the `check` report, plus near-duplicates by perceptual hash); image statistics
by class with blank, background-only and blurry patches flagged; the label region (central
32x32) against the ring around it; random, most typical and most atypical patches per class; a
2-D PCA map of colour/texture features.

It reads the decoded cache in chunks, so memory stays flat for the 220,025-patch Kaggle set.
Counts, fractions, means, spreads and histograms are exact over every usable patch of the
analysed split; only the pictures (thumbnails, map points) are samples, as the report says.

The pass over the patches is :mod:`.analysis`, the integrity section :mod:`.integrity`,
the figures :mod:`.figures` and the page :mod:`.page`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.data.cache import open_cache
from metastasis.data.checks import CheckReport, check_dataset
from metastasis.data.layouts import open_layout
from metastasis.eda import figures as plots
from metastasis.eda import image_stats as st
from metastasis.eda.analysis import SplitAnalysis, analyse_split, save, short
from metastasis.eda.flagged import REASONS, flagged_patches
from metastasis.eda.integrity import GROUP_EXAMPLES, integrity, near_duplicates
from metastasis.eda.page import render_html
from metastasis.io import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    check_outputs,
    output_dir,
)

__all__ = ["SplitAnalysis", "analyse_split", "write_eda_report"]

RANDOM_PER_CLASS = 24  # random patches shown per class
EXTREMES_PER_CLASS = 16  # most typical / most atypical patches shown per class
CENTRE_PER_CLASS = 8  # patches shown with the label region outlined
FLAG_EXAMPLES = 16  # thumbnails per quality flag
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
    folder = Path(out)
    layout = open_layout(data)
    check_outputs(
        files=[folder / "eda.json", folder / "report.html", folder / "flagged.csv"],
        folders=[folder],
        is_input=layout.is_input,
    )
    report = check_dataset(data, split, cache_root, progress=progress)
    cached = {
        s.split: open_cache(layout.listing(s.split), cache_root, progress=False)
        for s in report.splits
    }
    target = split or ("train" if "train" in cached else next(iter(cached)))
    a = analyse_split(cached[target], progress)
    output_dir(folder)
    rng = np.random.default_rng(seed)
    n = len(a.rows)
    near = near_duplicates(a)
    others = [c for s, c in cached.items() if s != target]
    flagged = flagged_patches(a, near, (d for c in others for d in c.digests[c.usable_indices()]))
    with atomic_path(folder / "flagged.csv") as tmp:
        flagged.to_csv(tmp, index=False)
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
        "integrity": integrity(report, cached, a, folder, near),
        "flagged": {
            "file": "flagged.csv",
            "count": len(flagged),
            "per_reason": {r: int((flagged["reason"] == r).sum()) for r in REASONS},
        },
        "image_statistics": _image_statistics(a, folder),
        "label_region": _label_region(a, rng, folder),
        "samples": _samples(a, rng, folder),
        "map": _map(a, rng, folder),
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    result = _plain(result)
    atomic_write_json(folder / "eda.json", result)
    atomic_write_text(folder / "report.html", render_html(result))
    return result


def _class_balance(report: CheckReport, folder: Path) -> dict[str, Any]:
    splits = {}
    for s in report.splits:
        total = sum(s.class_counts.values())
        percent = {k: 100 * v / total for k, v in s.class_counts.items()} if total else {}
        splits[s.split] = {"n": total, "counts": s.class_counts, "percent": percent}
    fig = plots.plot_class_balance({s.split: s.class_counts for s in report.splits})
    return {"splits": splits, "figure": save(folder, "class_balance.png", fig, "Class balance")}


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
        save(
            folder,
            "pixel_histograms.png",
            plots.plot_pixel_histograms(densities),
            "Pixel distributions per class (every pixel of every patch)",
        ),
        save(
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
            flags[name]["figure"] = save(
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
        save(folder, "centre_vs_ring.png", fig, "Centre (label region) minus ring, per patch")
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
        figures.append(save(folder, "centre_outlined.png", fig, caption))
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
            fig = plots.plot_thumbnails(a.images(idx), [short(n) for n in a.names(idx)])
            out["figures"].append(save(folder, f"samples_{kind}_{c}.png", fig, captions[kind]))
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
        "figure": save(folder, "pca_map.png", fig, f"PCA map of {len(pick):,} random patches"),
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
