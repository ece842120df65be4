"""inference.runtime: ONNX Runtime and PyTorch engines, checked against PyTorch float32."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from metastasis.engine.trainer import RunResult
from metastasis.errors import MetastasisError
from metastasis.export.onnx import export_onnx
from metastasis.inference import runtime
from metastasis.inference.runtime import ENGINES, make_engine
from metastasis.models import create_model, default_preprocessing

CPU = torch.device("cpu")


def _batch(name: str, n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 96, 96, 3), dtype=torch.uint8, generator=g)
    return default_preprocessing(name)(images)


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name).eval()


@pytest.mark.parametrize("name", ["baseline-cnn", "regularised-cnn"])
def test_auto_runs_onnxruntime_on_cpu_within_the_tolerance(name: str) -> None:
    model = _model(name)
    x = _batch(name)
    with torch.inference_mode():
        expected = model(x).float()
    engine = make_engine(model, default_preprocessing(name), CPU)
    assert engine.name == "onnxruntime" and engine.precision == "float32"
    assert engine.checked_diff is not None and engine.checked_diff <= runtime.TOLERANCE
    got = engine(x)
    assert got.dtype == torch.float32 and got.shape == (len(x),)
    assert float((got - expected).abs().max()) <= runtime.TOLERANCE
    assert "onnxruntime (float32)" in engine.describe()


def test_a_refused_onnx_model_falls_back_to_torch_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime, "TOLERANCE", -1.0)  # no difference is small enough now
    model, pre = _model("baseline-cnn"), default_preprocessing("baseline-cnn")
    engine = make_engine(model, pre, CPU)
    assert engine.name == "torch"
    assert "ONNX Runtime not used" in caplog.text and "differ from PyTorch" in caplog.text
    with pytest.raises(MetastasisError, match="onnxruntime cannot run this model"):
        make_engine(model, pre, CPU, "onnxruntime")


def test_torch_engines_and_bad_names() -> None:
    model, pre = _model("baseline-cnn"), default_preprocessing("baseline-cnn")
    x = _batch("baseline-cnn")
    exact = make_engine(model, pre, CPU, "torch")
    fast = make_engine(model, pre, CPU, "torch-bf16")
    assert (exact.precision, fast.precision) == ("float32", "bfloat16")
    a, b = exact(x), fast(x)
    assert b.dtype == torch.float32
    assert float((a - b).abs().max()) < 0.1  # bf16 is close, not exact
    with pytest.raises(MetastasisError, match="unknown engine 'tensorrt'"):
        make_engine(model, pre, CPU, "tensorrt")
    with pytest.raises(MetastasisError, match="runs on the CPU"):
        make_engine(model, pre, torch.device("meta"), "onnxruntime")


def test_the_engines_are_declared_once_and_parsing_imports_no_torch() -> None:
    """The runtime's engines are the declared options' (the flags derive from them), and the
    declaration imports no torch, so that parsing a command line stays fast."""
    import subprocess
    import sys

    from metastasis.inference.options import ENGINES as DECLARED

    assert ENGINES is DECLARED
    code = "import sys, metastasis.inference.options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["torch", "torch-bf16"])
def test_torch_engines_run_a_cpu_batch_in_chunks_in_order(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(runtime, "CPU_CHUNK", 4)  # 10 patches: chunks of 4, 4 and 2
    model, pre = _model("baseline-cnn"), default_preprocessing("baseline-cnn")
    x = _batch("baseline-cnn", n=10)
    engine = make_engine(model, pre, CPU, name)
    got = engine(x)
    assert got.shape == (10,) and got.dtype == torch.float32
    tolerance = 1e-5 if name == "torch" else 0.05
    singles = torch.cat([engine(x[i : i + 1]) for i in range(10)])  # one patch per pass
    assert float((got - singles).abs().max()) <= tolerance
    assert float((engine(x.flip(0)) - got.flip(0)).abs().max()) <= tolerance  # kept in order


def test_a_run_folders_model_onnx_is_used_and_a_stale_one_replaced(
    trained_run: RunResult, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from metastasis.inference.predictor import Predictor

    run = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run)
    predictor = Predictor.from_checkpoint(run)
    assert predictor.engine.name == "onnxruntime"
    assert predictor.engine.source == str(run / "model.onnx")
    assert "from " in predictor.engine.describe()
    # a model.onnx of other weights: refused on the probe, the checkpoint exported again
    torch.manual_seed(7)
    export_onnx(create_model("baseline-cnn").eval(), run / "model.onnx")
    with caplog.at_level(logging.WARNING, logger="metastasis.inference.runtime"):
        again = Predictor.from_checkpoint(run / "checkpoint.pt")
    assert again.engine.name == "onnxruntime" and again.engine.source is None
    assert again.engine.checked_diff is not None and again.engine.checked_diff <= 1e-4
    assert "model.onnx not used" in caplog.text and "differ" in caplog.text
    images = trained_run_images()
    np.testing.assert_allclose(
        again.predict_proba(images), predictor.predict_proba(images), atol=1e-5
    )


def trained_run_images() -> np.ndarray:
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (5, 96, 96, 3), dtype=torch.uint8, generator=g).numpy()
