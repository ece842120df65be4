"""One pass over a cached split for the EDA report: per-patch statistics, quality flags,
pixel histograms per class and perceptual hashes (:func:`analyse_split`), plus the two helpers
every report section shares (:func:`short` captions, :func:`save` figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from metastasis.data.cache import CachedSplit
from metastasis.eda import image_stats as st
from metastasis.reports.figures import save_figure

__all__ = ["CHUNK", "SplitAnalysis", "analyse_split", "save", "short"]

CHUNK = 512  # patches read from the memory map at a time


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
        return [short(f"{n} [{self.classes[g]}]") for n, g in zip(self.names(idx), self.group[idx])]


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


def save(folder: Path, name: str, fig: Figure, caption: str) -> dict[str, str]:
    """Write ``fig`` as ``folder/name`` (PNG); return the ``{"file", "caption"}`` entry the
    page shows."""
    save_figure(fig, folder / name, dpi=100)
    return {"file": name, "caption": caption}


def short(text: str, width: int = 30) -> str:
    """``text`` cut to its last ``width`` characters (for thumbnail captions)."""
    return text if len(text) <= width else "..." + text[-(width - 3) :]
