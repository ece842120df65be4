"""ONNX export: a model as an ONNX graph with a dynamic batch size, and its metadata.

The graph takes the preprocessed float batch (``image``: N x 3 x S x S, what the checkpoint's
``Preprocessing`` makes of uint8 patches) and returns one logit per patch (``logit``: N).
``inference.runtime`` runs it with ONNX Runtime after checking it against PyTorch; a file
written for a checkpoint (``export.bundle``) also holds ``export.metadata``'s keys in its
``metadata_props``.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metastasis.errors import MetastasisError, first_line
from metastasis.export.metadata import INPUT_NAME, OUTPUT_NAME, decode, encode
from metastasis.io import atomic_write_bytes

ONNX_OPSET = 17
RUN_ONNX = "model.onnx"  # what training writes into a run folder, beside checkpoint.pt


def onnx_bytes(
    model: nn.Module, input_size: int = 96, metadata: Mapping[str, Any] | None = None
) -> bytes:
    """``model`` (float32, on the CPU) as a serialised ONNX graph, with ``metadata`` (any JSON
    values) in its ``metadata_props``."""
    model = model.eval()
    dummy = torch.zeros(2, 3, input_size, input_size)
    buffer: Any = io.BytesIO()  # torch.onnx.export's annotation says path, it takes files too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (dummy,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    if not metadata:
        return buffer.getvalue()
    import onnx

    proto = onnx.load_from_string(buffer.getvalue())
    del proto.metadata_props[:]
    for key, value in encode(metadata).items():
        proto.metadata_props.add(key=key, value=value)
    return bytes(proto.SerializeToString())


def export_onnx(
    model: nn.Module,
    target: str | os.PathLike[str] | Any,
    input_size: int = 96,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model`` (float32, on the CPU) as ONNX to ``target``: a path (written atomically)
    or a binary file object."""
    data = onnx_bytes(model, input_size, metadata)
    if isinstance(target, (str, os.PathLike)):
        atomic_write_bytes(target, data)
    else:
        target.write(data)


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata_props`` of an ONNX file, values decoded from JSON."""
    import onnx

    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf and file errors alike
        raise MetastasisError(f"{path}: not a readable ONNX file ({first_line(exc)})") from None
    return decode({p.key: p.value for p in proto.metadata_props})


def onnx_session(model: bytes | str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session (all graph optimisations, errors-only logging)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
