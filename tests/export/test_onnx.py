"""export.onnx: the ONNX graph of a model, run by ONNX Runtime."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from metastasis.export.onnx import export_onnx
from metastasis.models import create_model, default_preprocessing


def _batch(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 96, 96, 3), dtype=torch.uint8, generator=g)
    return default_preprocessing("baseline-cnn")(images)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("baseline-cnn").eval()


def test_exported_file_runs_with_any_batch_size(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "model.onnx"
    export_onnx(model, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    for n in (1, 5):
        x = _batch(n)
        out = session.run(None, {"image": x.contiguous().numpy()})[0]
        with torch.inference_mode():
            np.testing.assert_allclose(out.reshape(-1), model(x).numpy(), atol=1e-4)


def test_export_writes_to_a_file_object() -> None:
    buffer = io.BytesIO()
    export_onnx(_model(), buffer)
    graph = onnx.load_from_string(buffer.getvalue()).graph
    assert [i.name for i in graph.input] == ["image"]
    assert [o.name for o in graph.output] == ["logit"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
