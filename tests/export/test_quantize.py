"""export.quantize: int8 models of real (tiny) checkpoints, their parity bound, the command."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from metastasis.checkpoint import Bundle, load_checkpoint, state_dict_cpu
from metastasis.cli import main
from metastasis.data.synthetic import make_patches
from metastasis.engine.trainer import RunResult
from metastasis.errors import MetastasisError
from metastasis.export import quantize
from metastasis.io import sha256_file
from metastasis.models import create_model, default_preprocessing

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def copy_run(run: Path, to: Path) -> Path:
    """The run folder's checkpoint, ONNX model and metrics in a folder of the test's own."""
    to.mkdir()
    for name in ("checkpoint.pt", "model.onnx", "metrics.json", "data.json"):
        if (run / name).exists():
            shutil.copy(run / name, to / name)
    return to


def test_a_tiny_model_quantizes_within_its_parity_bound(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("regularised-cnn").eval()
    pre = default_preprocessing("regularised-cnn")
    bundle = Bundle("regularised-cnn", {}, state_dict_cpu(model), pre, temperature=1.5)
    images, _ = make_patches(48, seed=1)
    out = tmp_path / "m.int8.xml"
    result = quantize.quantize_bundle(bundle, out, images[:32], "32 synthetic", images[32:], "16")
    assert out.is_file() and out.with_suffix(".bin").is_file()
    assert result.parity.n == 16 and result.parity.max_abs_dp <= quantize.PARITY_LIMIT
    assert result.parity.p99_abs_dp <= result.parity.max_abs_dp
    # the written file, run again, agrees with PyTorch float32 within the measured difference
    x = pre(torch.from_numpy(images[32:])).numpy()
    with torch.inference_mode():
        want = torch.sigmoid(model(torch.from_numpy(x)) / 1.5).numpy().reshape(-1)
    got = 1 / (1 + np.exp(-quantize.compiled_runner(out)(x) / 1.5))
    assert np.abs(got - want).max() <= result.parity.max_abs_dp + 1e-6
    meta = quantize.read_int8_metadata(out)
    assert meta["precision"] == "int8" and meta["calibration"] == "32 synthetic"
    assert meta["arch"] == "regularised-cnn" and meta["temperature"] == 1.5
    assert meta["parity"]["max_abs_probability_difference"] == result.parity.max_abs_dp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.bin", "m.int8.xml"]


def test_export_int8_writes_beside_model_onnx_with_a_model_card(
    trained_run: RunResult, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(trained_run.run_dir, tmp_path / "run")
    argv = ["export", "--checkpoint", str(run), "--format", "int8", "--no-progress"]
    calib = ["--calibration", str(demo_data / "train"), "--n-calibration", "64"]
    assert main([*argv, *calib, "--data", str(demo_data / "valid"), "--n-probe", "32"]) == 0
    printed = capsys.readouterr().out
    assert "OpenVINO" in printed and "calibrated on 64 patches of" in printed
    assert (run / "model.int8.xml").is_file() and (run / "model.int8.bin").is_file()
    meta = quantize.read_int8_metadata(run / "model.int8.xml")
    assert meta["parity"]["patches"].startswith("32 patches of")
    assert meta["parity"]["max_abs_probability_difference"] <= quantize.PARITY_LIMIT
    assert meta["threshold"] == load_checkpoint(run).threshold
    assert meta["checkpoint_sha256"] == sha256_file(run / "checkpoint.pt")  # what it was checked on
    card = (run / "MODEL_CARD.md").read_text()
    assert "model.int8.xml" in card and "model.onnx" in card and "--engine int8" in card


def test_int8_requests_refused_with_one_line(
    trained_run: RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(trained_run.run_dir)
    assert main(["export", "--checkpoint", run, "--format", "int8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--calibration" in err
    # a model that cannot be quantized: its graph does not take the patches it declares
    bundle = load_checkpoint(run)
    bad = Bundle(bundle.arch, {"in_size": 64}, {}, bundle.preprocessing)
    torch.manual_seed(0)
    bad.state_dict = state_dict_cpu(create_model(bundle.arch, in_size=64))
    images, _ = make_patches(8, seed=0)
    with pytest.raises(MetastasisError, match="cannot be quantized to int8") as info:
        quantize.quantize_bundle(bad, tmp_path / "bad.xml", images, "8 synthetic")
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MetastasisError, match=r"name a \.xml file"):
        quantize.quantize_bundle(bundle, tmp_path / "m.onnx", images, "8 synthetic")
