import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.helpers import write_image

from metastasis.data.cache import open_split
from metastasis.engine.trainer import RunResult
from metastasis.errors import DataError
from metastasis.inference.evaluate import evaluate_checkpoint
from metastasis.inference.predict import predict_to_csv
from metastasis.inference.predictor import Predictor
from metastasis.metrics.classification import binary_metrics


def test_predictor_arrays_match_the_training_run(trained_run: RunResult, demo_data: Path) -> None:
    predictor = Predictor.from_checkpoint(trained_run.run_dir, device="cpu", batch_size=16)
    data = open_split(demo_data / "valid", progress=False)
    idx = data.usable_indices()
    probs, _ = predictor.predict_split(data, idx, progress=False)
    direct = predictor.predict_proba(np.asarray(data.images[idx]))
    np.testing.assert_allclose(probs, direct, atol=1e-6)
    saved = pd.read_csv(trained_run.run_dir / "val_predictions.csv")
    np.testing.assert_allclose(probs, saved["probability"], atol=1e-5)
    single = predictor.predict_proba(np.asarray(data.images[idx[0]]))
    assert single.shape == (1,) and abs(single[0] - probs[0]) < 1e-6


def test_evaluate_writes_top_level_metrics(
    trained_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    m = evaluate_checkpoint(trained_run.checkpoint, demo_data, out, split="valid", progress=False)
    saved = json.loads((out / "metrics.json").read_text())
    assert (saved["engine"], saved["engine_precision"]) == ("onnxruntime", "float32")
    for key in (
        "accuracy",
        "roc_auc",
        "pr_auc",
        "sensitivity",
        "specificity",
        "f1",
        "confusion_matrix",
        "threshold",
    ):
        assert saved[key] == m[key]
    preds = pd.read_csv(out / "predictions.csv")
    assert list(preds.columns) == ["id", "probability", "prediction", "truth"]
    expected = binary_metrics(preds["truth"], preds["probability"], 0.5)
    assert saved["roc_auc"] == pytest.approx(expected["roc_auc"], abs=1e-6)
    assert saved["accuracy"] == pytest.approx(trained_run.metrics["val"]["accuracy"])
    assert {"roc.png", "pr.png", "confusion_matrix.png", "report.html"} <= {
        p.name for p in out.iterdir()
    }


def test_evaluate_needs_labels(trained_run: RunResult, kaggle_data: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has no labels"):
        evaluate_checkpoint(
            trained_run.run_dir, kaggle_data, tmp_path, split="test", progress=False
        )


def test_predict_csv_and_kaggle_submission(
    trained_run: RunResult, kaggle_data: Path, tmp_path: Path
) -> None:
    table = predict_to_csv(trained_run.run_dir, kaggle_data, tmp_path / "p.csv", progress=False)
    saved = pd.read_csv(tmp_path / "p.csv")
    assert list(saved.columns) == ["id", "probability", "prediction"] and len(saved) == 12
    assert set(saved["id"]) == {p.stem for p in (kaggle_data / "test").glob("*.tif")}
    assert ((saved["probability"] >= 0.5).astype(int) == saved["prediction"]).all()
    assert len(table) == 12
    predict_to_csv(
        trained_run.run_dir,
        kaggle_data,
        tmp_path / "sub.csv",
        kaggle_submission=True,
        progress=False,
    )
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert list(sub.columns) == ["id", "label"] and len(sub) == 12
    np.testing.assert_allclose(
        sub.set_index("id")["label"].sort_index(), saved.set_index("id")["probability"].sort_index()
    )


def test_predict_on_labelled_data_writes_the_truth_and_joins_the_runs_predictions(
    trained_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    predict_to_csv(trained_run.run_dir, demo_data / "valid", tmp_path / "p.csv", progress=False)
    ours = pd.read_csv(tmp_path / "p.csv", dtype={"id": str})
    assert list(ours.columns) == ["id", "probability", "prediction", "truth"]
    run = pd.read_csv(trained_run.run_dir / "val_predictions.csv", dtype={"id": str})
    both = ours.merge(run, on="id", suffixes=("", "_run"))
    assert len(both) == len(ours) == len(run) == 64
    np.testing.assert_allclose(both["probability"], both["probability_run"], atol=2e-6)
    assert (both["truth"] == both["truth_run"]).all()
    assert (both["prediction"] == both["prediction_run"]).all()


def test_predict_excludes_and_lists_bad_files(
    trained_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "imgs"
    for p in sorted((demo_data / "valid" / "1").iterdir())[:3]:
        (folder / p.name).parent.mkdir(parents=True, exist_ok=True)
        (folder / p.name).write_bytes(p.read_bytes())
    write_image(folder / "tiny.png", np.zeros((10, 10, 3), np.uint8))
    predict_to_csv(trained_run.run_dir, folder, tmp_path / "p.csv", progress=False)
    assert len(pd.read_csv(tmp_path / "p.csv")) == 3
    excluded = pd.read_csv(tmp_path / "p.csv.excluded.csv")
    assert list(excluded["id"]) == ["tiny"] and list(excluded["problem"]) == ["wrong_size"]


def test_kaggle_submission_needs_kaggle_layout(
    trained_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="needs the Kaggle layout"):
        predict_to_csv(
            trained_run.run_dir,
            demo_data,
            tmp_path / "s.csv",
            kaggle_submission=True,
            progress=False,
        )


def test_kaggle_submission_is_never_silently_incomplete(
    trained_run: RunResult, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kaggle rejects a submission without a row per test image: stop and name them, or write
    the probability the user chose for them and say how many."""
    from metastasis.data import synthetic

    data = synthetic.write_kaggle_dataset(tmp_path / "k", n_train=4, n_test=6, seed=9)
    (data / "test" / "broken.tif").write_bytes(b"not a tiff")
    write_image(data / "test" / "small.tif", np.zeros((90, 96, 3), np.uint8))
    out = tmp_path / "sub.csv"
    with pytest.raises(DataError, match=r"2 test image\(s\) cannot be predicted \(broken, small;"):
        predict_to_csv(trained_run.run_dir, data, out, kaggle_submission=True, progress=False)
    assert not out.exists()
    listed = pd.read_csv(tmp_path / "sub.csv.excluded.csv")
    assert sorted(listed["id"]) == ["broken", "small"]
    with pytest.raises(DataError, match=r"must be a probability in \[0, 1\]"):
        predict_to_csv(trained_run.run_dir, data, out, kaggle_submission=True, fill_unreadable=2)
    caplog.set_level("WARNING")
    predict_to_csv(
        trained_run.run_dir, data, out, kaggle_submission=True, fill_unreadable=0.5, progress=False
    )
    sub = pd.read_csv(out).set_index("id")
    assert len(sub) == 8 and sub.loc["broken", "label"] == sub.loc["small", "label"] == 0.5
    assert "2 test images could not be predicted: wrote 0.5 for them" in caplog.text
