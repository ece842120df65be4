"""MODEL_CARD.md: what a trained model is, is for, and how well it did, for people.

Hugging Face model-card conventions: YAML front matter (``library_name``, ``tags``,
``pipeline_tag``, ``model-index`` with the validation results) and the usual sections (model
details, uses and out-of-scope uses, training data, evaluation, calibration, limitations, how to
use). Built from the checkpoint bundle, and where it is known, the run folder's
``metrics.json`` (validation metrics with 95% bootstrap intervals) and ``data.json`` (sources,
counts, validation protocol). Nothing in it is invented: a number that is not known is
said to be unknown.

The text is the Jinja2 template ``reports/templates/model_card.md``; :func:`card_values` computes
what it shows. Markdown is not escaped: user text (paths, file lines) is printed as it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

from metastasis.checkpoint import Bundle
from metastasis.io import atomic_write_text

FILENAME = "MODEL_CARD.md"
TEMPLATE = "model_card.md"  # in metastasis/reports/templates/
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
        "tags": ["histopathology", "lymph-node", "metastasis", "patch-classification"]
        + (["synthetic-data"] if bundle.synthetic else ["pcam"]),
        "metrics": [r["type"] for r in results],
    }
    if bundle.warning:
        meta["warning"] = bundle.warning
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
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)


def model_card(
    bundle: Bundle,
    metrics: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    files: Sequence[str] = (),
) -> str:
    """The card's Markdown. ``metrics``/``data``: a run folder's ``metrics.json`` and
    ``data.json`` (the bundle's own summary is used without them); ``files``: what sits beside
    the card (checkpoint, exports) with a line each."""
    return _environment().get_template(TEMPLATE).render(card_values(bundle, metrics, data, files))


@lru_cache(maxsize=1)
def _environment() -> Environment:
    """The report templates' loader and settings (``reports.html``), without autoescaping: the
    card is Markdown. The folder is found through the ``metastasis`` package, so that writing a
    card at the end of training loads none of the report layers."""
    return Environment(
        loader=PackageLoader("metastasis", "reports/templates"),
        autoescape=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def card_values(
    bundle: Bundle,
    metrics: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    files: Sequence[str] = (),
) -> dict[str, Any]:
    """What the card's template shows, each value as it is printed."""
    metrics, data = dict(metrics or {}), dict(data or {})
    cfg, p = bundle.config, bundle.preprocessing
    val = dict(metrics.get("val") or {})
    ci = val.get("ci95") or {}
    val_name = str(cfg.get("val_data") or cfg.get("data") or "unknown")
    method = (metrics.get("checkpoint") or {}).get("threshold_method") or bundle.metrics.get(
        "threshold_method", "fixed"
    )
    recipe = ("epochs", "batch_size", "optimizer", "lr", "schedule", "augment", "precision", "seed")
    return {
        "front_matter": _front_matter(bundle, val, val_name, "validation"),
        "warning": bundle.warning,
        "arch": bundle.arch,
        "arch_kwargs": json.dumps(bundle.arch_kwargs),
        "finetune": _finetune(bundle),
        "input_size": p.input_size,
        "mpp": p.mpp,
        "mean": list(p.mean),
        "std": list(p.std),
        "temperature": f"{bundle.temperature:.4f}",
        "calibrated": bundle.temperature != 1.0,
        "threshold": f"{bundle.threshold:.4f}",
        "method": method,
        "negative": bundle.class_names[0],
        "positive": bundle.class_names[1],
        "tta": bundle.tta,
        "versions": _versions(bundle.versions),
        "train_data": cfg.get("data", "unknown"),
        "split": cfg.get("split"),
        "train_counts": _counts(data.get("train")),
        "protocol": data.get("validation_protocol"),
        "val_data": cfg.get("val_data"),
        "seed": cfg.get("seed", "unknown"),
        "val_fraction": cfg.get("val_fraction", "unknown"),
        "val_counts": _counts(data.get("val")),
        "r": {key: cfg.get(key, "?") for key in recipe},
        "run_metrics": bool(metrics),
        "best_epoch": metrics.get("best_epoch"),
        "members": _members(bundle),
        "swa": _swa(metrics.get("swa")),
        "evaluated": bool(val),
        "val_name": val_name,
        "n": val.get("n", "?"),
        "n_positive": val.get("n_positive", "?"),
        "rows": [
            (name, _number(val[key]), _interval(ci, key) or "n/a")
            for key, name in METRIC_NAMES.items()
            if key in val
        ],
        "best_auc": _number(bundle.metrics.get("val_roc_auc")),
        "ece": _number(val.get("ece")),
        "brier": _number(val.get("brier")),
        "files": list(files),
    }


def _finetune(bundle: Bundle) -> str:
    """What an encoder-probe's training changed in its encoder ('' for other models)."""
    if bundle.arch != "encoder-probe":
        return ""
    n = int(bundle.arch_kwargs.get("finetune_blocks") or 0)
    if not n:
        return "frozen; only the head was trained (a probe on its embeddings)"
    scale = bundle.config.get("encoder_lr_scale", "?")
    return (
        f"fine-tuned the last {n} block{'s' if n != 1 else ''} and the final norm "
        f"(at {scale} x the head's learning rate), the rest frozen; the checkpoint holds the "
        "head and those blocks, the rest is read from the weight file"
    )


def _members(bundle: Bundle) -> list[str]:
    """An ensemble's members (``metastasis ensemble``), a line each; none for other models."""
    members = bundle.metrics.get("members") if bundle.arch == "ensemble" else None
    lines = []
    for m in members if isinstance(members, list) else []:
        auc = (m.get("val") or {}).get("roc_auc")
        lines.append(
            f"`{m.get('run')}`: {m.get('arch')}, temperature {m.get('temperature', 1.0):.4f}, "
            f"threshold {m.get('threshold', 0.5):.4f}"
            + (f", validation ROC-AUC {auc:.4f}" if isinstance(auc, float) else "")
        )
    return lines


def _swa(swa: Any) -> dict[str, Any] | None:
    """A weight average's numbers (``metrics.json``'s ``swa``) as the card prints them."""
    if not isinstance(swa, Mapping):
        return None
    first, last = swa["epochs"]
    return {
        "first": first,
        "last": last,
        "auc": _number(swa["val_roc_auc"]),
        "last_auc": _number(swa["last_epoch_val_roc_auc"]),
        "best_auc": _number(swa["best_epoch_val_roc_auc"]),
        "best_epoch": swa["best_epoch"],
    }


def _versions(versions: Mapping[str, str]) -> str:
    keys = ("metastasis", "torch", "python")
    shown = [f"{k} {versions[k]}" for k in keys if k in versions]
    return ", ".join(shown) or "unknown versions"


def _counts(summary: Any) -> str:
    """A data summary's counts (``data.json``) as text; empty where none is known."""
    if not isinstance(summary, Mapping):
        return ""
    counts = summary.get("class_counts") or {}
    used = summary.get("n_used")
    parts = [f"{used:,} patches used" if isinstance(used, int) else ""]
    if counts:
        parts.append(", ".join(f"label {k}: {v:,}" for k, v in counts.items()))
    if summary.get("n_excluded"):
        parts.append(f"{summary['n_excluded']:,} excluded")
    return "; ".join(x for x in parts if x)


def write_model_card(
    path: str | os.PathLike[str],
    bundle: Bundle,
    metrics: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    files: Sequence[str] = (),
) -> Path:
    """Write ``model_card(...)`` to ``path`` atomically."""
    return atomic_write_text(path, model_card(bundle, metrics, data, files))
