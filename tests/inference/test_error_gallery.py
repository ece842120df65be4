"""inference.error_gallery: the most confident mistakes of an evaluation, with Grad-CAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metastasis.engine.trainer import RunResult
from metastasis.inference.error_gallery import most_confident_errors
from metastasis.inference.evaluate import evaluate_checkpoint


def test_most_confident_errors_orders_each_kind_by_confidence() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    probs = np.array([0.9, 0.6, 0.2, 0.1, 0.45, 0.8, 0.99, 0.3])
    picked = most_confident_errors(labels, probs, threshold=0.5, k=2)
    assert picked["false_positive"].tolist() == [6, 0]  # 0.99, 0.9 (0.6 left out: k=2)
    assert picked["false_negative"].tolist() == [3, 7]  # 0.1, 0.3
    none = most_confident_errors(labels, (labels == 1).astype(float), 0.5, k=3)
    assert all(len(v) == 0 for v in none.values())


def test_evaluate_report_shows_the_error_gallery(
    trained_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ev"
    metrics = evaluate_checkpoint(
        trained_run.run_dir, demo_data / "valid", out, progress=False, gallery=3
    )
    (_tn, fp), (fn, _tp) = metrics["confusion_matrix"]
    assert fp + fn > 0  # one epoch on 160 patches makes mistakes to show
    report = (out / "report.html").read_text()
    assert "<h2>Error gallery</h2>" in report
    assert f"{fp} false positives, {fn} false negatives" in report
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors.columns) == [
        "id",
        "probability",
        "prediction",
        "truth",
        "kind",
        "centre_share",
    ]
    preds = pd.read_csv(out / "predictions.csv")
    for kind, count, png, truth in (
        ("false_positive", fp, "errors_fp.png", 0),
        ("false_negative", fn, "errors_fn.png", 1),
    ):
        shown = errors[errors["kind"] == kind]
        assert len(shown) == min(3, count)
        assert (png in report) == (count > 0) and (out / png).exists() == (count > 0)
        if count:
            assert (out / png).read_bytes().startswith(b"\x89PNG")
            wrong = preds[(preds["truth"] == truth) & (preds["prediction"] != truth)]
            ranked = wrong.sort_values("probability", ascending=truth == 1)["id"].head(3)
            assert list(shown["id"].astype(str)) == list(ranked.astype(str))
            assert (shown["truth"] == truth).all()


def test_evaluate_without_a_gallery(
    trained_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    evaluate_checkpoint(
        trained_run.run_dir, demo_data / "valid", tmp_path, progress=False, gallery=0
    )
    assert "Error gallery" not in (tmp_path / "report.html").read_text()
    assert not (tmp_path / "errors.csv").exists()
