from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from tests.encoders.tiny_vit import TINY, TINY_KWARGS
from tests.slides.conftest import mosaic, write_pyramid

from metastasis.checkpoint import load_checkpoint
from metastasis.config import TrainConfig
from metastasis.data.cache import open_split
from metastasis.engine.probe import fit_probe
from metastasis.export.bundle import export_checkpoint
from metastasis.inference.predictor import Predictor
from metastasis.metrics.classification import binary_metrics
from metastasis.serve.app import create_app
from metastasis.slides import run_slides
from metastasis.training import train
from metastasis.transforms.presets import PCAM_MPP


def test_a_probe_learns_a_synthetic_task_the_same_way_for_a_seed() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    x = rng.normal(size=(600, 32)).astype(np.float32)
    x[:, :4] += 3.0 * y[:, None]  # the label shifts four of the 32 dimensions
    kw: dict[str, Any] = {"max_epochs": 30, "lr": 1e-2}
    a = fit_probe(x[:400], y[:400], x[400:], y[400:], seed=3, **kw)
    b = fit_probe(x[:400], y[:400], x[400:], y[400:], seed=3, **kw)
    mlp = fit_probe(x[:400], y[:400], x[400:], y[400:], head="mlp", seed=3, **kw)
    assert binary_metrics(y[400:], a.val_probs)["roc_auc"] > 0.95
    assert binary_metrics(y[400:], mlp.val_probs)["roc_auc"] > 0.95
    np.testing.assert_array_equal(a.val_probs, b.val_probs)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_probe_checkpoint_round_trip_offline_through_predict_export_slides_and_serve(
    demo_data: Path, tiny_weights: Path, tmp_path: Path, no_network: None
) -> None:
    cfg = TrainConfig(
        data=str(demo_data / "train"),
        val_data=str(demo_data / "valid"),
        encoder=TINY,
        weights=str(tiny_weights),
        model_kwargs=TINY_KWARGS,
        input_size=32,
        probe_seeds=2,
        probe_epochs=5,
        out=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
    )
    result = train(cfg, progress=False)
    run = result.run_dir
    assert {"checkpoint.pt", "metrics.json", "probe_seeds.csv", "MODEL_CARD.md"} <= {
        p.name for p in run.iterdir()
    }
    assert len(result.metrics["probe"]["seeds"]) == 2 and "ci95" in result.metrics["val"]
    bundle = load_checkpoint(run)
    assert bundle.arch == "encoder-probe" and set(bundle.state_dict) == {"head.weight", "head.bias"}
    assert bundle.arch_kwargs["weights"] == str(tiny_weights)
    assert len(bundle.arch_kwargs["weights_sha256"]) == 64
    assert bundle.preprocessing.input_size == 32
    # the checkpoint's model = the encoder's embeddings through the head
    split = open_split(demo_data / "valid", cache_root=tmp_path / "cache", progress=False)
    images = np.asarray(split.images[:8])
    predictor = Predictor.from_checkpoint(run, engine="torch")
    probs = predictor.predict_proba(images)
    model = bundle.build_model()
    with torch.no_grad():
        z = model.encoder(bundle.preprocessing(torch.from_numpy(images)))
        expected = torch.sigmoid(model.head(z).squeeze(1)).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    exported = export_checkpoint(run, tmp_path / "probe.onnx", progress=False)
    assert exported.max_abs_diff <= 1e-4 and exported.model_card is not None
    card = exported.model_card.read_text()
    assert "encoder-probe" in card and "weights_sha256" in card
    # slides and the service take it as any other checkpoint (still offline)
    tumour = np.zeros((3, 3), bool)
    tumour[1, 1] = True
    slide = write_pyramid(
        tmp_path / "s.tif", mosaic(3, 3, np.ones((3, 3), bool), tumour), PCAM_MPP, 1
    )
    table = run_slides([slide], run, tmp_path / "slides", progress=False)
    assert table["status"].tolist() == ["ok"]
    tiles = pd.read_csv(tmp_path / "slides" / "s" / "tiles.csv")
    assert 0 < len(tiles) <= 9 and tiles["probability"].between(0, 1).all()
    png = io.BytesIO()
    Image.fromarray(images[0]).save(png, format="PNG")
    with TestClient(create_app(run, engine="torch")) as client:
        answer = client.post("/v1/predict", files={"files": ("a.png", png.getvalue(), "image/png")})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["probability"] == pytest.approx(probs[0], abs=1e-4)
