"""export.bundle / metadata / torchscript: every registered model exported, checked, read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tests.helpers import model_families
from torch import nn

from metastasis.checkpoint import Bundle, load_checkpoint, state_dict_cpu
from metastasis.cli import main
from metastasis.data import synthetic
from metastasis.engine.trainer import RunResult
from metastasis.errors import MetastasisError
from metastasis.export import bundle as export_bundle_module
from metastasis.export.bundle import export_bundle, export_checkpoint
from metastasis.export.onnx import read_onnx_metadata
from metastasis.export.torchscript import load_torchscript
from metastasis.models import create_model, default_preprocessing
from metastasis.transforms.presets import Preprocessing

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}


def _random_bundle(name: str) -> tuple[Bundle, nn.Module]:
    """A registered model with random weights, and its bundle; timm backbones at a small input
    (fast)."""
    torch.manual_seed(0)
    timm = "cnn" not in name
    model = create_model(name, **({"pretrained": False} if timm else {}))
    p = default_preprocessing(name)
    if timm:  # every backbone takes 32 px or more; batch-norm statistics made non-trivial
        p = Preprocessing(input_size=48, mean=p.mean, std=p.std, mpp=p.mpp)
        # (the encoder-probe's encoder comes from its own weight file, not the checkpoint)
        for m in model.modules() if name != "encoder-probe" else ():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return Bundle(
        arch=name,
        arch_kwargs={"pretrained": False} if timm else {},
        state_dict=state_dict_cpu(model),
        preprocessing=p,
        threshold=0.42,
        temperature=1.7,
        tta="d4",
    ), model.eval()


def _run_file(fmt: str, path: Path, x: torch.Tensor) -> tuple[np.ndarray, dict]:
    """Logits of the exported file, run by its own runtime, and its metadata."""
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = session.run(None, {"image": np.ascontiguousarray(x.numpy())})[0]
        return out.reshape(-1), read_onnx_metadata(path)
    module, meta = load_torchscript(path)
    with torch.no_grad():
        return module(x).reshape(-1).numpy(), meta


@pytest.mark.parametrize("name", model_families())
def test_every_registered_model_exports_with_parity_and_metadata(name: str, tmp_path: Path) -> None:
    bundle, model = _random_bundle(name)
    images, _ = synthetic.make_patches(6, seed=2)
    x = bundle.preprocessing(torch.from_numpy(images)).contiguous()
    with torch.no_grad():
        expected = model(x).numpy()
    for fmt, filename in FORMATS.items():
        path = tmp_path / filename
        diff = export_bundle(bundle, path, fmt, images[:4])
        assert 0 <= diff <= 1e-4
        logits, meta = _run_file(fmt, path, x)  # 6 patches: another batch size than traced
        np.testing.assert_allclose(logits, expected, atol=1e-4)
        assert meta["arch"] == name and meta["format"] == "metastasis-export/1"
        assert meta["input_size"] == bundle.preprocessing.input_size
        assert meta["mean"] == list(bundle.preprocessing.mean)
        assert meta["std"] == list(bundle.preprocessing.std)
        assert meta["mpp"] == pytest.approx(0.972)
        assert meta["channel_order"] == "RGB" and meta["source_dtype"] == "uint8"
        assert meta["input_layout"] == "NCHW" and meta["scale"] == pytest.approx(1 / 255)
        assert (meta["threshold"], meta["temperature"], meta["tta"]) == (0.42, 1.7, "d4")
        assert meta["class_names"] == ["normal", "tumour"]
        assert meta["invariance"] == ("d4" if name == "p4m-cnn" else "none")


def test_a_failed_parity_check_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, _ = _random_bundle("baseline-cnn")
    images, _ = synthetic.make_patches(4, seed=2)
    monkeypatch.setattr(export_bundle_module, "TOLERANCE", -1.0)  # nothing can pass
    with pytest.raises(MetastasisError, match=r"not written.*differ from PyTorch's"):
        export_bundle(bundle, tmp_path / "model.onnx", "onnx", images)
    assert list(tmp_path.iterdir()) == []


def test_export_command_checks_on_real_patches_and_writes_a_model_card(
    trained_run: RunResult,
    demo_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "exports" / "model.pt"
    argv = ["export", "--checkpoint", str(trained_run.run_dir), "--format", "torchscript"]
    assert (
        main([*argv, "--out", str(out), "--data", str(demo_data / "valid"), "--no-progress"]) == 0
    )
    printed = capsys.readouterr().out
    assert "parity on 64 patches of" in printed and "max abs logit difference" in printed
    diff = float(printed.split("from PyTorch ")[1].split()[0])
    assert 0 <= diff <= 1e-4
    card = (out.parent / "MODEL_CARD.md").read_text()
    assert card.startswith("---\n") and "model.pt" in card and "Not for diagnosis" in card
    _, meta = load_torchscript(out)
    bundle = load_checkpoint(trained_run.run_dir)
    assert meta["threshold"] == bundle.threshold and meta["arch"] == bundle.arch
    # without --data: synthetic patches
    result = export_checkpoint(trained_run.checkpoint, tmp_path / "m.onnx", "onnx", n_probe=8)
    assert result.probe == "8 synthetic patches" and result.max_abs_diff <= 1e-4


def test_export_refuses_bad_requests_with_one_line(
    trained_run: RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_checkpoint = tmp_path / "x.pt"
    not_a_checkpoint.write_text("hello")
    rc = main(["export", "--checkpoint", str(not_a_checkpoint), "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "x.pt" in err
    with pytest.raises(MetastasisError, match="at least 1"):
        export_checkpoint(trained_run.checkpoint, tmp_path / "m.onnx", n_probe=0)
    with pytest.raises(MetastasisError, match="unknown export format"):
        export_checkpoint(trained_run.checkpoint, tmp_path / "m.onnx", "tflite")
    with pytest.raises(MetastasisError, match="is a folder"):
        export_checkpoint(trained_run.checkpoint, tmp_path, "onnx", n_probe=2)
    assert not (tmp_path / "m.onnx").exists()


def test_training_leaves_a_checked_model_onnx_and_a_model_card(trained_run: RunResult) -> None:
    run = trained_run.run_dir
    meta = read_onnx_metadata(run / "model.onnx")
    bundle = load_checkpoint(run)
    assert meta["threshold"] == bundle.threshold and meta["temperature"] == bundle.temperature
    assert meta["arch"] == bundle.arch and meta["input_size"] == bundle.preprocessing.input_size
    card = (run / "MODEL_CARD.md").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"{metrics['val']['roc_auc']:.4f}" in card
    assert "model.onnx" in card and "checkpoint.pt" in card
