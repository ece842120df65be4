"""export.model_card: MODEL_CARD.md from a run's checkpoint, metrics.json and data.json."""

from __future__ import annotations

import json

import yaml

from metastasis.engine.checkpoint import load_checkpoint
from metastasis.engine.trainer import RunResult
from metastasis.export.model_card import model_card, read_run_info


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
