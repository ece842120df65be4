"""The integrity section of the EDA report: the `check` findings of every split, each with
thumbnails of its patches (from the cache, or read from the file the cache left out), and
near-duplicates by perceptual hash in the analysed split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metastasis.data.cache import DUPLICATE_PIXELS, CachedSplit, duplicate_groups
from metastasis.data.checks import CheckReport
from metastasis.data.decode import preview_file
from metastasis.data.listing import Finding
from metastasis.eda import figures as plots
from metastasis.eda import image_stats as st
from metastasis.eda.analysis import SplitAnalysis, save, short

__all__ = ["GROUP_EXAMPLES", "integrity", "near_duplicates"]

GROUP_EXAMPLES = 8  # thumbnails (or groups of duplicates) per integrity finding


def integrity(
    report: CheckReport,
    cached: dict[str, CachedSplit],
    a: SplitAnalysis,
    folder: Path,
    near_groups: list[np.ndarray],
) -> dict[str, Any]:
    """The `check` findings (counted there, over every patch), each with thumbnails, and the
    near-duplicate groups of :func:`near_duplicates`."""
    out: dict[str, Any] = {"ok": report.ok, "splits": {}, "across_splits": []}
    for s in report.splits:
        out["splits"][s.split] = [
            _finding(f, _thumbnails(cached[s.split], f), folder, f"{s.split}_{f.kind}")
            for f in s.findings
        ]
    for f in report.findings:  # across splits: examples "split/source = split/source"
        groups = [[n.partition("/") for n in ex.split(" = ")] for ex in f.examples]
        images = [[_by_source(cached.get(sp), src) for sp, _, src in g] for g in groups]
        captions = [[short(sp + "/" + src) for sp, _, src in g] for g in groups]
        out["across_splits"].append(_finding(f, (images, captions), folder, f"across_{f.kind}"))
    out["near_duplicates"] = _near_duplicates(a, near_groups, folder)
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
        entry["figure"] = save(folder, f"integrity_{name}.png", fig, f"{f.kind}: examples")
    return entry


def _thumbnails(c: CachedSplit, f: Finding) -> Thumbs:
    if f.kind == DUPLICATE_PIXELS:
        groups = duplicate_groups(c.digests[c.ok], c.sources[c.ok])[:GROUP_EXAMPLES]
        return [[_by_source(c, n) for n in g] for g in groups], [
            [short(n) for n in g] for g in groups
        ]
    rows = np.flatnonzero(c.problems == f.kind)[:GROUP_EXAMPLES]
    root = Path(c.meta["source"])
    if len(rows):  # per-image problems (unreadable, wrong size or mode): read the file itself
        images = [[_by_source(c, str(c.sources[r]), from_file=True)] for r in rows]
        return images, [[short(f"{c.sources[r]}: {c.details[r]}", 40)] for r in rows]
    names = [ex.split(" (")[0] for ex in f.examples[:GROUP_EXAMPLES]]  # index-level: file names
    return [[_read(_find_file(root, c.meta["split"], n))] for n in names], [
        [short(n)] for n in names
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
    """The file a finding names, looked up only inside the data set's own folders: a name from a
    labels file (``../x``, ``/etc/x``, ``sub/x``) is never joined into a path."""
    if Path(name).name != name or name in (".", ".."):
        return None
    for folder in (root, root / split, root / "0", root / "1"):
        for candidate in (name, *(name + e for e in (".tif", ".png", ".jpg", ".jpeg"))):
            if (folder / candidate).is_file():
                return folder / candidate
    return None


def _read(path: Path | None) -> np.ndarray | None:
    """An image file as an RGB thumbnail, with the decoder's guards (None when it cannot be
    shown safely: not a regular file, not a plain raster format, too large)."""
    return None if path is None else preview_file(path)


def _hashed(a: SplitAnalysis) -> np.ndarray:
    """Positions of the patches compared by pHash: one per exact pixel content (exact copies
    are `check`'s), without blank and background-only patches (glass looks alike)."""
    keep = np.zeros(len(a.rows), bool)
    keep[np.unique(a.cached.digests[a.rows], return_index=True)[1]] = True
    return np.flatnonzero(keep & ~a.flags["blank"] & ~a.flags["background_only"])


def near_duplicates(a: SplitAnalysis) -> list[np.ndarray]:
    """pHash near-duplicate groups (positions into ``a.rows``), largest first."""
    idx = _hashed(a)
    return [idx[g] for g in st.near_duplicate_groups(a.hashes[idx], st.NEAR_DUPLICATE_MAX_DISTANCE)]


def _near_duplicates(a: SplitAnalysis, groups: list[np.ndarray], folder: Path) -> dict[str, Any]:
    """The near-duplicate section: counts, examples and a figure of the first groups."""
    idx = _hashed(a)
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
        result["figure"] = save(folder, "near_duplicates.png", fig, "Near-duplicate groups")
    return result
