"""inference.light and predict on image files: a run folder's model.onnx run without PyTorch,
with the numbers of the PyTorch-checked engine, and only where it belongs to the checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metastasis.checkpoint import Bundle, save_checkpoint, state_dict_cpu
from metastasis.data.synthetic import make_patches
from metastasis.export.bundle import export_bundle
from metastasis.inference.light import LightPredictor
from metastasis.inference.predict import predict_images
from metastasis.inference.predictor import Predictor
from metastasis.models import create_model
from metastasis.transforms.presets import PCAM_MPP, Preprocessing
from metastasis.transforms.stain import StainReference


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder as training leaves it: checkpoint.pt, then model.onnx checked against it."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    pre = Preprocessing(mean=(0.7, 0.55, 0.7), std=(0.15, 0.2, 0.15), mpp=PCAM_MPP)
    model = create_model("baseline-cnn")
    bundle = Bundle("baseline-cnn", {}, state_dict_cpu(model), pre, threshold=0.45)
    save_checkpoint(folder / "checkpoint.pt", bundle)
    export_bundle(bundle, folder / "model.onnx", "onnx", make_patches(8, seed=1)[0])
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    out = []
    for i, patch in enumerate(make_patches(3, seed=2)[0]):
        Image.fromarray(patch).save(folder / f"p{i}.png")
        out.append(folder / f"p{i}.png")
    return out


def test_model_onnx_without_pytorch_gives_the_checked_engines_numbers(
    run: Path, images: list[Path], tmp_path: Path
) -> None:
    patches = np.stack([np.asarray(Image.open(p)) for p in images])
    for tta in ("none", "d4"):
        light = LightPredictor.from_run(run, tta=tta, device="cpu")
        assert light is not None and "not checked again" in light.describe()
        full = Predictor.from_checkpoint(run, tta=tta, device="cpu", engine="onnxruntime")
        np.testing.assert_allclose(light.predict_proba(patches), full.predict_proba(patches),
                                   atol=2e-6, rtol=0)  # fmt: skip
    written = predict_images(run, [*images, run / "checkpoint.pt"], tmp_path / "p.csv")
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "id,probability,prediction" and len(lines) == 4 == len(written) + 1
    assert lines[1].startswith("p0,") and "not checked again" in written.engine
    assert "checkpoint,checkpoint.pt" not in lines[1]
    excluded = (tmp_path / "p.csv.excluded.csv").read_text().splitlines()
    assert excluded[0] == "id,source,problem,detail" and excluded[1].startswith("checkpoint,")
    frame = written.frame()  # the table predict_to_csv returns
    assert list(frame.columns) == ["id", "probability", "prediction"] and len(frame) == 3


def test_model_onnx_is_not_trusted_when_it_may_not_be_the_checkpoints(
    run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("checkpoint.pt", "model.onnx"):
        (folder / name).write_bytes((run / name).read_bytes())
    assert LightPredictor.from_run(folder, device="cpu") is not None
    assert LightPredictor.from_run(folder, device="cpu", engine="torch") is None
    stamp = os.stat(folder / "model.onnx").st_mtime
    os.utime(folder / "checkpoint.pt", (stamp + 10, stamp + 10))  # rewritten after the export
    assert LightPredictor.from_run(folder, device="cpu") is None
    bundle = torch.load(folder / "checkpoint.pt", weights_only=True)
    torch.save({**bundle, "threshold": 0.3}, folder / "checkpoint.pt")  # another checkpoint
    os.utime(folder / "model.onnx", (stamp + 20, stamp + 20))
    assert LightPredictor.from_run(folder, device="cpu") is None
    full = Predictor.from_checkpoint(folder, device="cpu")  # checked against PyTorch instead
    assert "max |logit difference| from PyTorch" in full.engine.describe()


def test_a_model_that_normalises_stains_never_takes_the_path_without_pytorch(
    images: list[Path], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    stain = StainReference("reinhard", mean=(-0.45, -0.07, 0.02), std=(0.31, 0.05, 0.014))
    pre = Preprocessing(mean=(0.7, 0.55, 0.7), std=(0.15, 0.2, 0.15), stain=stain)
    bundle = Bundle("baseline-cnn", {}, state_dict_cpu(create_model("baseline-cnn")), pre)
    save_checkpoint(tmp_path / "checkpoint.pt", bundle)
    export_bundle(bundle, tmp_path / "model.onnx", "onnx", make_patches(8, seed=1)[0])
    assert LightPredictor.from_run(tmp_path, device="cpu") is None
    written = predict_images(tmp_path, images, tmp_path / "p.csv")
    patches = np.stack([np.asarray(Image.open(p)) for p in images])
    full = Predictor.from_checkpoint(tmp_path, device="cpu", engine="torch")
    probs = [
        float(line.split(",")[1]) for line in (tmp_path / "p.csv").read_text().splitlines()[1:]
    ]
    np.testing.assert_allclose(probs, full.predict_proba(patches), atol=1e-5, rtol=0)
    assert "not checked again" not in written.engine


def test_predict_one_image_through_the_cli_imports_neither_pytorch_nor_pandas(
    run: Path, images: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "one.csv"
    script = (
        "import sys\nfrom metastasis.cli import main\n"
        f"code = main(['-q', 'predict', '--checkpoint', {str(run)!r}, '--data', "
        f"{str(images[0])!r}, '--out', {str(out)!r}, '--device', 'cpu'])\n"
        "print(code, sorted(m for m in ('torch', 'pandas') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr
    assert out.read_text().splitlines()[1].startswith("p0,")
