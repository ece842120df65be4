"""MODEL_CARD.md: what a trained model is, is for, and how well it did, for people.

Hugging Face model-card conventions: YAML front matter (``library_name``, ``tags``,
``pipeline_tag``, ``model-index`` with the validation results) and the usual sections (model
details, uses and out-of-scope uses, training data, evaluation, calibration, limitations, how to
use). Built from the checkpoint bundle, and where it is known, the run folder's
``metrics.json`` (validation metrics with 95% bootstrap intervals) and ``data.json`` (sources,
counts, validation protocol). Nothing in it is invented: a number that is not known is
said to be unknown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from metastasis.engine.checkpoint import Bundle
from metastasis.io import atomic_write_text

FILENAME = "MODEL_CARD.md"
METRIC_NAMES = {
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "f1": "F1",
    "balanced_accuracy": "Balanced accuracy",
    "ece": "Expected calibration error",
    "brier": "Brier score",
}


def read_run_info(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics.json, data.json) of a run folder; empty where missing or unreadable."""
    out = []
    for name in ("metrics.json", "data.json"):
        try:
            out.append(dict(json.loads((Path(run_dir) / name).read_text())))
        except (OSError, ValueError, TypeError):
            out.append({})
    return out[0], out[1]


def _number(value: Any) -> str:
    return (
        f"{value:.4f}" if isinstance(value, float) else "unknown" if value is None else str(value)
    )


def _interval(ci: Mapping[str, Any], key: str) -> str:
    bounds = ci.get(key) if isinstance(ci, Mapping) else None
    if isinstance(bounds, Mapping) and isinstance(bounds.get("low"), float):
        return f"{bounds['low']:.4f} to {bounds['high']:.4f}"
    return ""


def _front_matter(bundle: Bundle, val: Mapping[str, Any], val_name: str, split: str) -> str:
    results = [
        {"type": key, "name": METRIC_NAMES[key], "value": round(float(val[key]), 4)}
        for key in METRIC_NAMES
        if isinstance(val.get(key), (int, float))
    ]
    meta: dict[str, Any] = {
        "library_name": "metastasis",
        "pipeline_tag": "image-classification",
        "tags": ["histopathology", "lymph-node", "metastasis", "patch-classification", "pcam"],
        "metrics": [r["type"] for r in results],
    }
    if results:
        meta["model-index"] = [
            {
                "name": f"metastasis-{bundle.arch}",
                "results": [
                    {
                        "task": {
                            "type": "image-classification",
                            "name": "Metastatic tissue in the central 32x32 of 96x96 H&E patches",
                        },
                        "dataset": {"type": "image-folder", "name": val_name, "split": split},
                        "metrics": results,
                    }
                ],
            }
        ]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def model_card(
    bundle: Bundle,
    metrics: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    files: Sequence[str] = (),
) -> str:
    """The card's Markdown. ``metrics``/``data``: a run folder's ``metrics.json`` and
    ``data.json`` (the bundle's own summary is used without them); ``files``: what sits beside
    the card (checkpoint, exports) with a line each."""
    metrics, data = dict(metrics or {}), dict(data or {})
    cfg = bundle.config
    val = dict(metrics.get("val") or {})
    ci = val.get("ci95") or {}
    p = bundle.preprocessing
    val_data = str(cfg.get("val_data") or cfg.get("data") or "unknown")
    split = "validation"
    method = (metrics.get("checkpoint") or {}).get("threshold_method") or bundle.metrics.get(
        "threshold_method", "fixed"
    )
    protocol = data.get("validation_protocol") or (
        f"the separate set {cfg['val_data']}"
        if cfg.get("val_data")
        else f"a stratified, seeded ({cfg.get('seed', 'unknown')}) hold-out of "
        f"{cfg.get('val_fraction', 'unknown')} of the training data"
    )
    lines = [
        _front_matter(bundle, val, val_data, split),
        f"# metastasis model: {bundle.arch}",
        "",
        "A patch classifier for metastatic cancer in 96 x 96 pixel H&E-stained lymph-node patches "
        "(PatchCamelyon / Kaggle Histopathologic Cancer Detection), trained with the "
        "`metastasis` toolkit. It gives the probability that the central 32 x 32 "
        "pixels of a patch contain tumour tissue.",
        "",
        "## Model details",
        "",
        f"- Architecture: `{bundle.arch}` with arguments `{json.dumps(bundle.arch_kwargs)}`; "
        "one logit per patch.",
        f"- Input: RGB patches of {p.input_size} x {p.input_size} pixels at {p.mpp} microns per "
        f"pixel (about 10x); uint8 / 255, then per channel (x - mean) / std with mean "
        f"{list(p.mean)} and std {list(p.std)}; NCHW float32 for the exported graphs.",
        f"- Output: probability = sigmoid(logit / {bundle.temperature:.4f}) (temperature "
        f"scaling); label `{bundle.class_names[1]}` when probability >= {bundle.threshold:.4f}, "
        f"else `{bundle.class_names[0]}`.",
        f"- Test-time augmentation: `{bundle.tta}`"
        + (" (mean logit of the 8 rotations and flips)" if bundle.tta == "d4" else "")
        + "; exported graphs run one view: average their logits yourself for the same numbers.",
        f"- Trained with: {_versions(bundle.versions)}.",
        "",
        "## Intended use",
        "",
        "Research and education: benchmarking patch classifiers, studying what they attend to "
        "(`metastasis explain`), and prototyping pipelines on PCam-like data. "
        "**Not for diagnosis.** It is not a medical device, has not been validated clinically, "
        "and must not be used to make or support decisions about patients.",
        "",
        "Out of scope: whole-slide diagnosis or staging without further validation; stains other "
        "than H&E; organs other than lymph nodes; other magnifications; any clinical use.",
        "",
        "## Training data and split protocol",
        "",
        f"- Training data: `{cfg.get('data', 'unknown')}`"
        + (f" (split `{cfg['split']}`)" if cfg.get("split") else "")
        + _counts(data.get("train")),
        f"- Validation: {protocol}" + _counts(data.get("val")),
        f"- Recipe: epochs {cfg.get('epochs', '?')}, batch {cfg.get('batch_size', '?')}, "
        f"optimiser {cfg.get('optimizer', '?')} (lr {cfg.get('lr', '?')}, schedule "
        f"{cfg.get('schedule', '?')}), augmentation `{cfg.get('augment', '?')}`, precision "
        f"{cfg.get('precision', '?')}, seed {cfg.get('seed', '?')}"
        + (f"; best epoch {metrics['best_epoch']} by validation ROC-AUC" if metrics else "")
        + ".",
        "",
        "## Evaluation",
        "",
    ]
    lines += _metrics_section(val, ci, val_data, bundle)
    lines += [
        "",
        "## Calibration",
        "",
        f"- Temperature: {bundle.temperature:.4f}"
        + (
            " (fitted on the validation set)"
            if bundle.temperature != 1.0
            else " (1: no temperature scaling)"
        ),
        f"- Expected calibration error (15 bins): {_number(val.get('ece'))}; Brier score: "
        f"{_number(val.get('brier'))} (validation"
        + (", after temperature scaling)." if bundle.temperature != 1.0 else ")."),
        f"- Threshold: {bundle.threshold:.4f}"
        + (
            " (fixed, not tuned)."
            if method == "fixed"
            else f", chosen by `{method}` on the "
            "validation set, which makes the validation accuracy, sensitivity and specificity "
            "slightly optimistic."
        ),
        "",
        "## Limitations",
        "",
        f"- Trained on 96 x 96 patches at ~{p.mpp} um/px"
        + (f" (resized to {p.input_size} x {p.input_size})" if p.input_size != 96 else "")
        + "; other sizes or resolutions (other magnifications, other scanners' pixel sizes) are "
        "out of distribution.",
        "- Stain and scanner shift: H&E colour varies between labs, stainings and scanners; "
        "accuracy measured on one source drops on others unless validated there.",
        "- The label concerns the central 32 x 32 pixels only; tumour in the border of a patch "
        "does not make it positive.",
        "- PCam's patches come from the 400 slides of Camelyon16 (two Dutch hospitals); "
        "validation metrics describe the validation set's population only.",
        "- The temperature was fitted on the validation set only; recalibrate on new data."
        if bundle.temperature != 1.0
        else "- Probabilities are not temperature-scaled; check their calibration on new data.",
        "",
        "## How to use",
        "",
        "```bash",
        "metastasis predict --checkpoint RUN --data PATCHES --out predictions.csv",
        "metastasis explain --checkpoint RUN --data PATCHES --out explanations/",
        "metastasis export --checkpoint RUN --format onnx --out model.onnx",
        "```",
        "",
        "The exported files carry the preprocessing, threshold, temperature, class names and "
        "microns per pixel in their metadata (ONNX `metadata_props`, TorchScript extra file "
        "`metastasis.json`).",
    ]
    if files:
        lines += ["", "## Files", ""] + [f"- {f}" for f in files]
    return "\n".join(lines) + "\n"


def _versions(versions: Mapping[str, str]) -> str:
    keys = ("metastasis", "torch", "python")
    shown = [f"{k} {versions[k]}" for k in keys if k in versions]
    return ", ".join(shown) or "unknown versions"


def _counts(summary: Any) -> str:
    if not isinstance(summary, Mapping):
        return "."
    counts = summary.get("class_counts") or {}
    used = summary.get("n_used")
    parts = [f"{used:,} patches used" if isinstance(used, int) else ""]
    if counts:
        parts.append(", ".join(f"label {k}: {v:,}" for k, v in counts.items()))
    if summary.get("n_excluded"):
        parts.append(f"{summary['n_excluded']:,} excluded")
    text = "; ".join(x for x in parts if x)
    return f" ({text})." if text else "."


def _metrics_section(
    val: Mapping[str, Any], ci: Mapping[str, Any], val_name: str, bundle: Bundle
) -> list[str]:
    if not val:
        auc = bundle.metrics.get("val_roc_auc")
        return [
            "The validation metrics of this checkpoint are not known here (no run folder "
            f"metrics.json); validation ROC-AUC at the best epoch: {_number(auc)}."
        ]
    lines = [
        f"On the validation set (`{val_name}`, {val.get('n', '?')} patches, "
        f"{val.get('n_positive', '?')} positive), at threshold {bundle.threshold:.4f}"
        + (f" with test-time augmentation `{bundle.tta}`" if bundle.tta != "none" else "")
        + ". In the last column: 95% percentile-bootstrap intervals over patches (1,000 "
        "resamples).",
        "",
        "| metric | value | 95% interval |",
        "|---|---|---|",
    ]
    for key, name in METRIC_NAMES.items():
        if key in val:
            lines.append(f"| {name} | {_number(val[key])} | {_interval(ci, key) or 'n/a'} |")
    return lines


def write_model_card(
    path: str | os.PathLike[str],
    bundle: Bundle,
    metrics: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    files: Sequence[str] = (),
) -> Path:
    """Write ``model_card(...)`` to ``path`` atomically."""
    return atomic_write_text(path, model_card(bundle, metrics, data, files))
