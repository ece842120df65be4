"""The int8 engine (inference.runtime, export.quantize): chosen only when asked, recorded in the
outputs, checked against PyTorch on the probe; refused requests are one line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from metastasis.checkpoint import load_checkpoint
from metastasis.engine.trainer import RunResult
from metastasis.errors import MetastasisError
from metastasis.export import quantize
from metastasis.inference.evaluate import evaluate_checkpoint
from metastasis.inference.predictor import Predictor
from metastasis.inference.runtime import make_engine
from metastasis.models import create_model

pytest.importorskip("openvino")
pytest.importorskip("nncf")

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def int8_run(
    trained_run: RunResult, demo_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A copy of the trained run folder with its int8 model (64 calibration patches)."""
    run = tmp_path_factory.mktemp("int8") / "run"
    run.mkdir()
    for name in ("checkpoint.pt", "model.onnx"):
        shutil.copy(trained_run.run_dir / name, run / name)
    quantize.quantize_checkpoint(
        run, demo_data / "train", n_calibration=64, progress=False, model_card=False
    )
    return run


def test_the_int8_engine_runs_only_when_asked_and_is_recorded(
    int8_run: Path, demo_data: Path, tmp_path: Path
) -> None:
    assert Predictor.from_checkpoint(int8_run, device="cpu").engine.name == "onnxruntime"
    fp32 = Predictor.from_checkpoint(int8_run, device="cpu", engine="onnxruntime")
    int8 = Predictor.from_checkpoint(int8_run, device="cpu", engine="int8")
    engine = int8.engine
    assert (engine.name, engine.precision) == ("int8", "int8")
    assert engine.runtime is not None and engine.runtime.startswith("OpenVINO")
    assert engine.checked_dp is not None and engine.checked_dp <= quantize.PARITY_LIMIT
    text = engine.describe()
    assert "model.int8.xml" in text and "calibrated on 64 patches of" in text
    assert engine.to_dict()["max_abs_probability_difference_on_probe"] == engine.checked_dp
    images = np.stack([np.asarray(p) for p in _patches(demo_data)])
    gap = np.abs(int8.predict_proba(images) - fp32.predict_proba(images)).max()
    assert gap <= quantize.PARITY_LIMIT
    metrics = evaluate_checkpoint(
        int8_run, demo_data / "valid", tmp_path / "eval", engine="int8", device="cpu",
        progress=False, gallery=0,
    )  # fmt: skip
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["engine"] == "int8" and saved["engine_precision"] == "int8"
    assert "OpenVINO" in saved["engine_detail"] and metrics["engine"] == "int8"


def test_slides_run_the_int8_model_tile_by_tile(int8_run: Path) -> None:
    from metastasis.slides.classify import SlideClassifier

    classifier = SlideClassifier.from_checkpoint(int8_run, stride=48, engine="int8", device="cpu")
    assert classifier.mode == "per-tile" and classifier.engine_text.startswith("int8 (int8, ")
    with pytest.raises(MetastasisError, match="int8 model classifies tile by tile"):
        SlideClassifier.from_checkpoint(int8_run, stride=48, engine="int8", fully_conv="on")


def _patches(demo_data: Path) -> list[np.ndarray]:
    from PIL import Image

    files = sorted((demo_data / "valid").rglob("*.png"))[:16]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def test_int8_refusals_are_one_line(
    int8_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = load_checkpoint(int8_run)
    model, pre = bundle.build_model(), bundle.preprocessing
    refusals = []
    with pytest.raises(MetastasisError, match="no int8 model") as info:  # nothing written yet
        make_engine(model, pre, CPU, "int8", onnx_file=tmp_path / "model.onnx")
    refusals.append(info.value)
    with pytest.raises(MetastasisError, match="give the run folder") as info:  # no run folder
        make_engine(model, pre, CPU, "int8")
    refusals.append(info.value)
    torch.manual_seed(1)  # other weights: the int8 model is not this checkpoint's
    other = create_model(bundle.arch, **bundle.arch_kwargs).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(8.0)
    with pytest.raises(MetastasisError, match="not this checkpoint's") as info:
        make_engine(other, pre, CPU, "int8", onnx_file=int8_run / "model.onnx")
    refusals.append(info.value)
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the extra were not installed
    with pytest.raises(MetastasisError, match=r"pip install 'metastasis\[int8\]'") as info:
        make_engine(model, pre, CPU, "int8", onnx_file=int8_run / "model.onnx")
    refusals.append(info.value)
    assert all("\n" not in str(r) for r in refusals)
