"""The error gallery of an evaluation: the most confident mistakes, with their Grad-CAM.

False positives (truth normal) with the highest probabilities and false negatives (truth
tumour) with the lowest, each beside its Grad-CAM overlay: what the model looked at when it was
most sure and wrong. ``evaluate`` puts them into its report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metastasis.data.cache import CachedSplit
from metastasis.inference.explain import centre_share, explained_patches, gradcam
from metastasis.inference.predictor import Predictor
from metastasis.predictions import COLUMNS, predictions_frame, write_table

GALLERY_SIZE = 8  # mistakes of each kind shown by default
FILES = {"false_positive": "errors_fp.png", "false_negative": "errors_fn.png"}
TITLES = {
    "false_positive": "Most confident false positives",
    "false_negative": "Most confident false negatives",
}


@dataclass(frozen=True)
class ErrorGallery:
    counts: dict[str, int]  # kind -> how many mistakes of that kind there were
    images: dict[str, str]  # kind -> PNG name in the output folder (kinds with mistakes only)
    table: pd.DataFrame  # the patches shown


def most_confident_errors(
    labels: np.ndarray, probs: np.ndarray, threshold: float, k: int
) -> dict[str, np.ndarray]:
    """Positions (into ``labels``/``probs``) of the ``k`` most confident false positives
    (highest probability first) and false negatives (lowest first)."""
    pred = probs >= threshold
    fp = np.flatnonzero((labels == 0) & pred)
    fn = np.flatnonzero((labels == 1) & ~pred)
    return {
        "false_positive": fp[np.argsort(-probs[fp], kind="stable")][:k],
        "false_negative": fn[np.argsort(probs[fn], kind="stable")][:k],
    }


def write_error_gallery(
    out_dir: Path,
    predictor: Predictor,
    cached: CachedSplit,
    rows: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    k: int = GALLERY_SIZE,
) -> ErrorGallery:
    """``errors_fp.png``, ``errors_fn.png`` (where there are such mistakes) and
    ``errors.csv`` (``id, probability, prediction, truth, kind, centre_share``) in ``out_dir``.
    ``rows``: the cache rows that ``labels``/``probs`` belong to."""
    from metastasis.reports.explanations import plot_explanations
    from metastasis.reports.figures import save_figure

    picked = most_confident_errors(labels, probs, predictor.threshold, k)
    pred = probs >= predictor.threshold
    counts = {
        "false_positive": int(((labels == 0) & pred).sum()),
        "false_negative": int(((labels == 1) & ~pred).sum()),
    }
    names = predictor.bundle.class_names if predictor.bundle else ("normal", "tumour")
    images, tables = {}, []
    for kind, pos in picked.items():
        if len(pos) == 0:
            continue
        patches = np.asarray(cached.images[rows[pos]])
        heats = gradcam(predictor, patches)
        ids = [str(i) for i in cached.ids[rows[pos]]]
        items = explained_patches(
            patches, heats, ids, probs[pos], predictor.threshold, labels[pos], names
        )
        title = (
            f"{TITLES[kind]}: {len(pos)} of {counts[kind]} (threshold {predictor.threshold:.3f})"
        )
        save_figure(plot_explanations(items, ncols=4, title=title), out_dir / FILES[kind])
        images[kind] = FILES[kind]
        tables.append(
            predictions_frame(
                ids,
                probs[pos],
                predictor.threshold,
                labels[pos],
                kind=kind,
                centre_share=centre_share(heats),
            )
        )
    columns = [*COLUMNS, "kind", "centre_share"]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)
    write_table(table, out_dir / "errors.csv")
    return ErrorGallery(counts, images, table)
