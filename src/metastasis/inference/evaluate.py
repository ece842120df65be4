"""`metastasis evaluate`: a checkpoint on any labelled set -> metrics, plots, predictions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from metastasis.checkpoint import checkpoint_path
from metastasis.data.cache import CachedSplit, open_labelled
from metastasis.data.layouts import open_layout
from metastasis.errors import MetastasisError
from metastasis.inference.error_gallery import GALLERY_SIZE, ErrorGallery, write_error_gallery
from metastasis.inference.predictor import Predictor
from metastasis.io import atomic_path, atomic_write_json, check_outputs, output_dir
from metastasis.predictions import predictions_frame, write_table

log = logging.getLogger(__name__)

EVAL_SPLITS = ("test", "valid", "val")
EVALUATION_FILES = ("metrics.json", "predictions.csv", "excluded.csv", "report.html", "errors.csv")


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    tta: str | None = None,
    engine: str = "auto",
    threshold: float | None = None,
    gallery: int = GALLERY_SIZE,
) -> dict[str, Any]:
    """Write ``metrics.json`` (top-level metric keys), plots, ``predictions.csv`` (``id,
    probability, prediction, truth``), ``excluded.csv``, the error gallery (the ``gallery`` most
    confident false positives and false negatives with their Grad-CAM: ``errors_fp.png``,
    ``errors_fn.png``, ``errors.csv``; 0: none) and ``report.html`` into ``out``; return the
    metrics. ``tta`` overrides the checkpoint's; ``engine`` is one of
    ``inference.runtime.ENGINES``."""
    from metastasis.reports.evaluation import write_evaluation

    if gallery < 0:
        raise MetastasisError(f"gallery must be 0 (none) or more, got {gallery}")
    out_dir = Path(out)
    check_outputs(
        files=[out_dir / name for name in EVALUATION_FILES],
        folders=[out_dir],
        inputs=[checkpoint_path(checkpoint)],
        is_input=open_layout(data).is_input,
    )
    predictor = Predictor.from_checkpoint(
        checkpoint, device=device, batch_size=batch_size, tta=tta, engine=engine,
        threshold=threshold,
    )  # fmt: skip
    cached, idx = open_labelled(
        data, split, EVAL_SPLITS, cache_dir, progress, "evaluate needs labels (use predict)"
    )
    log.info("engine: %s", predictor.engine.describe())  # once the data is known to be good
    probs, labels = predictor.predict_split(cached, idx, progress)
    output_dir(out_dir)
    metrics = write_evaluation(out_dir, labels, probs, predictor.threshold)
    excluded = cached.excluded()
    metrics.update(_provenance(checkpoint, data, cached, predictor, len(excluded)))
    atomic_write_json(out_dir / "metrics.json", metrics)
    write_table(
        predictions_frame(cached.ids[idx], probs, predictor.threshold, labels),
        out_dir / "predictions.csv",
    )
    _write_excluded(out_dir / "excluded.csv", excluded)
    sections = {}
    if gallery:
        errors = write_error_gallery(out_dir, predictor, cached, idx, labels, probs, gallery)
        sections["Error gallery"] = _gallery_section(errors, gallery)
    _write_report(out_dir, checkpoint, data, predictor, metrics, sections)
    return metrics


def _provenance(
    checkpoint: str | Path,
    data: str | Path,
    cached: CachedSplit,
    predictor: Predictor,
    n_excluded: int,
) -> dict[str, Any]:
    """What was evaluated, on what and how: recorded beside the metrics."""
    return {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "split": cached.meta["split"],
        "data_fingerprint": cached.fingerprint,
        "n_excluded": n_excluded,
        "device": str(predictor.device),
        "threshold": predictor.threshold,
        "temperature": predictor.temperature,
        "tta": predictor.tta,
        "engine": predictor.engine.name,
        "engine_precision": predictor.engine.precision,
        "engine_detail": predictor.engine.describe(),  # runtime, file, parity (int8: calibration)
    }


def _write_excluded(path: Path, excluded: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        excluded.to_csv(tmp, index=False)
    if len(excluded):
        log.warning("%d files excluded; listed in %s", len(excluded), path)


def _gallery_section(errors: ErrorGallery, gallery: int) -> tuple[list[str], str]:
    """The report's error-gallery images and caption."""
    shown = [errors.images[k] for k in ("false_positive", "false_negative") if k in errors.images]
    n_fp, n_fn = errors.counts["false_positive"], errors.counts["false_negative"]
    caption = (
        f"Up to {gallery} of the most confident mistakes of each kind ({n_fp} false positives, "
        f"{n_fn} false negatives in all; shown ones listed in errors.csv): each patch "
        "beside its Grad-CAM overlay of the tumour logit; the white "
        "square is the central 32x32 the label is about."
    )
    return shown, caption if shown else "No mistakes to show."


def _write_report(
    out_dir: Path,
    checkpoint: str | Path,
    data: str | Path,
    predictor: Predictor,
    metrics: dict[str, Any],
    sections: dict[str, tuple[list[str], str]],
) -> None:
    from metastasis.data.synthetic import is_synthetic
    from metastasis.reports.evaluation import write_html_report

    drawn = (
        ["Evaluated on the built-in synthetic drawings, not tissue."] if is_synthetic(data) else []
    )
    write_html_report(
        out_dir / "report.html",
        f"Evaluation on {data}",
        metrics,
        ["roc.png", "pr.png", "confusion_matrix.png", "reliability.png"],
        image_sections=sections,
        notes=[
            f"Checkpoint: {checkpoint}",
            f"Threshold: {predictor.threshold}; temperature {predictor.temperature:.3f}; "
            f"test-time augmentation: {predictor.tta}",
            f"Excluded files: {metrics['n_excluded']}",
            *drawn,
        ],
        warning=predictor.bundle.warning if predictor.bundle is not None else None,
    )
