"""ONNX export: a model as an ONNX graph with a dynamic batch size.

The graph takes the preprocessed float batch (``image``: N x 3 x S x S, what the checkpoint's
``Preprocessing`` makes of uint8 patches) and returns one logit per patch (``logit``: N).
``inference.runtime`` runs it with ONNX Runtime after checking it against PyTorch.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

ONNX_OPSET = 17


def export_onnx(model: nn.Module, target: Any, input_size: int = 96) -> None:
    """Write ``model`` (float32, on the CPU) as ONNX to ``target`` (a path or binary file)."""
    model = model.eval()
    dummy = torch.zeros(2, 3, input_size, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (dummy,),
            target,
            input_names=["image"],
            output_names=["logit"],
            dynamic_axes={"image": {0: "batch"}, "logit": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
