"""The int8 engine (inference.runtime, export.quantize): chosen only when asked, recorded in the
outputs, checked against PyTorch on the probe; refused requests are one line. Its light path
(inference.light): the same numbers without PyTorch, only for an int8 model verified against
this very checkpoint when written."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
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
from metastasis.inference.light import LightPredictor
from metastasis.inference.predict import predict_images
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
    assert isinstance(classifier.predictor, LightPredictor)  # verified when written: no PyTorch
    assert "not checked again" in classifier.engine_text
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


def test_the_light_int8_path_gives_the_int8_engines_numbers(
    int8_run: Path, demo_data: Path
) -> None:
    images = np.stack(_patches(demo_data))
    light = LightPredictor.from_run(int8_run, engine="int8", device="cpu")
    assert light is not None
    text = light.describe()
    assert text.startswith("int8 (int8, OpenVINO ") and "not checked again" in text
    assert "parity measured against this checkpoint.pt" in text and "when written" in text
    full = Predictor.from_checkpoint(int8_run, engine="int8", device="cpu")
    assert "on a probe" in full.engine.describe()  # test-time augmentation: test_light.py
    np.testing.assert_allclose(light.predict_proba(images), full.predict_proba(images),
                               atol=1e-6, rtol=0)  # fmt: skip


def test_int8_predict_and_slides_start_without_pytorch(
    int8_run: Path, demo_data: Path, tmp_path: Path
) -> None:
    image, out = sorted((demo_data / "valid").rglob("*.png"))[0], tmp_path / "one.csv"
    script = (
        "import sys\nfrom metastasis.cli import main\n"
        "from metastasis.slides.classify import SlideClassifier\n"
        f"code = main(['-q', 'predict', '--checkpoint', {str(int8_run)!r}, '--data', "
        f"{str(image)!r}, '--out', {str(out)!r}, '--device', 'cpu', '--engine', 'int8'])\n"
        f"c = SlideClassifier.from_checkpoint({str(int8_run)!r}, engine='int8', device='cpu')\n"
        "print(code, c.engine_text[:5], sorted(m for m in ('torch',) if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.splitlines()[-1] == "0 int8  []", done.stderr
    assert out.read_text().splitlines()[1].startswith(image.stem + ",")


def test_a_stale_or_unverified_int8_model_is_checked_on_the_probe_instead(
    int8_run: Path, demo_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint.pt", "model.onnx", "model.int8.bin", "model.int8.xml"):
        shutil.copy(int8_run / name, run / name)
    caplog.set_level(logging.DEBUG, logger="metastasis.inference.light")
    stamp = os.stat(run / "model.int8.xml").st_mtime
    os.utime(run / "checkpoint.pt", (stamp + 10, stamp + 10))  # rewritten after the int8 model
    assert LightPredictor.from_run(run, engine="int8", device="cpu") is None
    assert "model.int8.xml is older than checkpoint.pt" in caplog.text
    bundle = torch.load(run / "checkpoint.pt", weights_only=True)  # other weights, same metadata
    bundle["state_dict"] = {k: v * 1.001 if v.is_floating_point() else v
                           for k, v in bundle["state_dict"].items()}  # fmt: skip
    torch.save(bundle, run / "checkpoint.pt")
    os.utime(run / "model.int8.xml", (stamp + 20, stamp + 20))
    assert LightPredictor.from_run(run, engine="int8", device="cpu") is None
    assert "verified against another checkpoint.pt" in caplog.text
    shutil.copy(int8_run / "checkpoint.pt", run / "checkpoint.pt")  # back, but the int8 file
    xml = (run / "model.int8.xml").read_text()  # as written before the SHA-256 was recorded
    (run / "model.int8.xml").write_text(re.sub(r"\s*<checkpoint_sha256 [^>]*/>", "", xml))
    assert LightPredictor.from_run(run, engine="int8", device="cpu") is None
    assert "its metadata has no checkpoint_sha256" in caplog.text
    image = sorted((demo_data / "valid").rglob("*.png"))[0]
    written = predict_images(run, [image], tmp_path / "p.csv", engine="int8", device="cpu")
    assert written.engine.startswith("int8 (int8, ") and "on a probe" in written.engine
