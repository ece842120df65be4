"""export.model_card: MODEL_CARD.md from a run's checkpoint, metrics.json and data.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from metastasis.checkpoint import Bundle, load_checkpoint
from metastasis.engine.trainer import RunResult
from metastasis.export.model_card import model_card, read_run_info
from metastasis.transforms.presets import Preprocessing


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_card_of_a_run_has_hugging_face_front_matter_and_the_validation_numbers(
    trained_run: RunResult,
) -> None:
    run = trained_run.run_dir
    card = (run / "MODEL_CARD.md").read_text()
    meta = _front_matter(card)
    metrics = json.loads((run / "metrics.json").read_text())
    val = metrics["val"]
    assert meta["library_name"] == "metastasis" and meta["pipeline_tag"] == "image-classification"
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["split"] == "validation"
    reported = {m["type"]: m["value"] for m in result["metrics"]}
    assert reported["roc_auc"] == round(val["roc_auc"], 4)
    assert reported["ece"] == round(val["ece"], 4)
    for section in (
        "## Intended use",
        "## Training data and split protocol",
        "## Evaluation",
        "## Calibration",
        "## Limitations",
    ):
        assert section in card
    low, high = val["ci95"]["roc_auc"]["low"], val["ci95"]["roc_auc"]["high"]
    assert f"| ROC-AUC | {val['roc_auc']:.4f} | {low:.4f} to {high:.4f} |" in card
    assert "Not for diagnosis" in card and "Stain and scanner shift" in card
    assert "96 x 96" in card and "0.972" in card
    data = json.loads((run / "data.json").read_text())
    assert data["validation_protocol"] in card
    assert f"{data['train']['n_used']:,} patches used" in card


def test_card_without_run_metrics_says_what_is_unknown(trained_run: RunResult) -> None:
    bundle = load_checkpoint(trained_run.checkpoint)
    card = model_card(bundle)
    assert "not known here" in card
    assert "model-index" not in _front_matter(card)
    assert read_run_info(trained_run.run_dir / "nowhere") == ({}, {})


# Two cards pinned byte for byte (written by the hand-built Markdown that the template replaced):
# every branch of the template, and user text (paths, file lines) printed as it is.
def _pinned_bundle(**changes: Any) -> Bundle:
    config = {
        "data": "data/pcam <train> & *more*",
        "split": "train",
        "val_data": "data/pcam_valid",
        "epochs": 3,
        "batch_size": 64,
        "optimizer": "sgd",
        "lr": 0.01,
        "schedule": "cosine",
        "augment": "strong",
        "precision": "bf16-mixed",
        "seed": 7,
    }
    fields: dict[str, Any] = {
        "arch": "baseline-cnn",
        "arch_kwargs": {"width": 16, "dropout": 0.25},
        "state_dict": {},
        "preprocessing": Preprocessing(input_size=128, mean=(0.7, 0.55, 0.7), std=(0.15, 0.2, 0.1)),
        "threshold": 0.421337,
        "temperature": 1.371234,
        "tta": "d4",
        "config": config,
        "metrics": {"threshold_method": "youden", "val_roc_auc": 0.91234567},
        "versions": {"metastasis": "0.1.0", "torch": "2.4.0", "python": "3.11.7", "numpy": "2"},
    }
    return Bundle(**{**fields, **changes})


PINNED_METRICS = {
    "best_epoch": 2,
    "checkpoint": {"threshold_method": "sensitivity:0.9"},
    "val": {
        "n": 1000,
        "n_positive": 400,
        "roc_auc": 0.9512345,
        "pr_auc": 0.93,
        "accuracy": 0.875,
        "sensitivity": 0.9,
        "specificity": 0.858333,
        "f1": 0.8,
        "balanced_accuracy": 0.8791665,
        "ece": 0.031,
        "brier": None,
        "ci95": {"roc_auc": {"low": 0.94, "high": 0.96}, "f1": {"low": None, "high": None}},
    },
}
PINNED_DATA = {
    "train": {"n_used": 12345, "class_counts": {"0": 7000, "1": 5345}, "n_excluded": 12},
    "val": {"n_used": 1000, "class_counts": {"0": 600, "1": 400}},
    "validation_protocol": "explicit validation set data/pcam_valid",
}
PINNED = {
    "full": lambda: model_card(
        _pinned_bundle(),
        PINNED_METRICS,
        PINNED_DATA,
        ["`checkpoint.pt`: the checkpoint", "`model.onnx`: ONNX <graph> & *stuff* | 1e-07"],
    ),
    "bare": lambda: model_card(
        _pinned_bundle(
            preprocessing=Preprocessing(),
            threshold=0.5,
            temperature=1.0,
            tta="none",
            config={"data": "synthetic", "seed": 3, "val_fraction": 0.2},
            metrics={},
            versions={},
        )
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_card_text_is_pinned(name: str) -> None:
    expected = (Path(__file__).parent / f"model_card_{name}.md").read_text(encoding="utf-8")
    assert PINNED[name]() == expected


def test_writing_a_card_loads_no_report_layer() -> None:
    """Training writes the card at its end, and the engine never reaches the reports."""
    code = (
        "import sys; from tests.export.test_model_card import PINNED; PINNED['bare']();"
        "assert not [m for m in sys.modules if m.startswith('metastasis.reports')]"
    )
    root = Path(__file__).parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_a_weight_average_is_named_with_its_numbers_and_the_epochs() -> None:
    swa = {
        "epochs": [3, 4],
        "val_roc_auc": 0.93,
        "last_epoch_val_roc_auc": 0.91,
        "best_epoch": 2,
        "best_epoch_val_roc_auc": 0.92,
    }
    card = model_card(_pinned_bundle(), {**PINNED_METRICS, "swa": swa}, PINNED_DATA)
    assert (
        "the weights are the average of epochs 3 to 4 (stochastic weight averaging, batch norm "
        "recomputed on the training patches): validation ROC-AUC 0.9300, against 0.9100 for the "
        "last epoch's own weights and 0.9200 for the best epoch's (2)."
    ) in card
    assert "best epoch 2 by validation ROC-AUC" not in card
