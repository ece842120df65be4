"""ensemble.build and ``metastasis ensemble``: a run folder that predict, evaluate, export and
serve use unchanged, giving the mean of the members' probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from tests.ensemble.test_bundle import member, saved
from tests.helpers import patches, write_image

from metastasis.checkpoint import load_checkpoint
from metastasis.cli import main
from metastasis.data.cache import open_split
from metastasis.ensemble import EnsembleOptions, build_ensemble
from metastasis.inference.predictor import Predictor
from metastasis.serve.app import create_app

Runs = tuple[Path, Path, Path]  # member a, member b, the ensemble


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, demo_data: Path) -> Runs:
    """Two real members (other architectures, temperatures and thresholds) and their ensemble,
    its threshold chosen on the demo set's 64 validation patches."""
    base = tmp_path_factory.mktemp("ensemble")
    a = saved(base, "a", member("regularised-cnn", 0, threshold=0.4, temperature=1.5))
    b = saved(base, "b", member("baseline-cnn", 1, threshold=0.6))
    argv = ["ensemble", str(a), str(b), "--out", str(base / "ens"), "--engine", "torch"]
    argv += ["--val-data", str(demo_data / "valid"), "--cost-patches", "4", "--no-progress"]
    assert main(argv) == 0
    return a, b, base / "ens"


_PREDICTORS: dict[Path, Predictor] = {}


def _members_mean(a: Path, b: Path, images: np.ndarray) -> np.ndarray:
    """The mean of the members' probabilities, each run as ``predict`` runs it alone."""
    for run in (a, b):
        if run not in _PREDICTORS:
            _PREDICTORS[run] = Predictor.from_checkpoint(run, engine="torch")
    return np.mean([_PREDICTORS[r].predict_proba(images) for r in (a, b)], axis=0)


def test_the_run_folder_holds_a_checkpoint_metrics_and_cost(runs: Runs) -> None:
    a, b, ens = runs
    assert {p.name for p in ens.iterdir()} >= {
        "checkpoint.pt", "config.yaml", "metrics.json", "val_predictions.csv", "model.onnx",
        "MODEL_CARD.md",
    }  # fmt: skip
    bundle = load_checkpoint(ens)
    assert bundle.arch == "ensemble" and not bundle.synthetic
    metrics = json.loads((ens / "metrics.json").read_text())
    assert metrics["checkpoint"]["threshold_method"] == "youden"
    assert metrics["checkpoint"]["threshold"] == pytest.approx(bundle.threshold)
    assert [m["run"] for m in metrics["members"]] == [str(a), str(b)]
    assert all(0 <= m["val"]["roc_auc"] <= 1 for m in metrics["members"])
    cost = metrics["cost"]
    assert cost["seconds_per_patch"] > 0 and len(cost["members_seconds_per_patch"]) == 2
    card = (ens / "MODEL_CARD.md").read_text()
    assert "An ensemble of 2 trained models" in card and f"`{a}`: regularised-cnn" in card


def test_predict_gives_the_mean_of_the_members(runs: Runs, demo_data: Path, tmp_path: Path) -> None:
    a, b, ens = runs
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--checkpoint", str(ens), "--data", str(demo_data / "valid"),
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    table = pd.read_csv(out)
    val = pd.read_csv(ens / "val_predictions.csv")
    assert list(table["id"]) == list(val["id"])
    split = open_split(demo_data / "valid", progress=False)
    rows = [list(split.ids).index(i) for i in table["id"]]
    expected = _members_mean(a, b, np.asarray(split.images[rows]))
    np.testing.assert_allclose(table["probability"], expected, atol=1e-6)
    np.testing.assert_allclose(val["probability"], expected, atol=1e-6)


def test_onnx_export_holds_every_member_in_one_graph(runs: Runs, tmp_path: Path) -> None:
    a, b, ens = runs
    out = tmp_path / "ensemble.onnx"
    assert main(["export", "--checkpoint", str(ens), "--format", "onnx", "--out", str(out)]) == 0
    images, _ = patches(8, seed=3)
    bundle = load_checkpoint(ens)
    x = bundle.preprocessing(torch.from_numpy(images))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, bundle.build_model()(x).numpy(), atol=1e-5)
    np.testing.assert_allclose(1 / (1 + np.exp(-got)), _members_mean(a, b, images), atol=1e-6)


def test_serve_answers_with_the_mean(runs: Runs, tmp_path: Path) -> None:
    a, b, ens = runs
    images, _ = patches(2, seed=4)
    paths = [write_image(tmp_path / f"p{i}.png", img) for i, img in enumerate(images)]
    files = [("files", (p.name, p.read_bytes())) for p in paths]
    with TestClient(create_app(ens)) as client:
        body = client.post("/v1/predict", files=files).json()
        model = client.get("/v1/model").json()
    got = [row["probability"] for row in body["predictions"]]
    np.testing.assert_allclose(got, _members_mean(a, b, images), atol=1e-6)
    assert model["architecture"] == "ensemble"


def test_the_same_folder_twice_and_a_refused_member_are_one_line(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, ens = runs
    assert main(["ensemble", str(a), str(b), "--out", str(ens)]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    with pytest.raises(Exception, match="at least two runs"):
        build_ensemble([a], tmp_path / "one", options=EnsembleOptions(cost_patches=2))
