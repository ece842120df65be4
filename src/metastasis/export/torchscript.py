"""TorchScript export: a traced model whose ``_extra_files`` hold ``export.metadata``'s keys.

Traced (not scripted) on a preprocessed float batch, like the ONNX graph: it takes N x 3 x S x S
float32 and returns N logits. ``torch.jit`` is deprecated in recent PyTorch but still traces and
runs, and it is what WSInfer and many deployment tools load.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from metastasis.errors import MetastasisError, first_line

EXTRA_FILE = "metastasis.json"


def torchscript_bytes(
    model: nn.Module, example: torch.Tensor, metadata: Mapping[str, Any] | None = None
) -> bytes:
    """``model`` (float32, CPU) traced on ``example`` and saved, with ``metadata`` as
    ``metastasis.json`` among its extra files."""
    model = model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation and tracer notices
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={EXTRA_FILE: json.dumps(metadata or {})})
    return buffer.getvalue()


def load_torchscript(source: str | os.PathLike[str] | bytes) -> tuple[Any, dict[str, Any]]:
    """(module in eval mode on the CPU, metadata) of a file (or its bytes) written from
    ``torchscript_bytes``."""
    files = {EXTRA_FILE: ""}
    where = "TorchScript bytes" if isinstance(source, bytes) else os.fspath(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f: Any = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
            module = torch.jit.load(f, map_location="cpu", _extra_files=files)
    except Exception as exc:  # zip and TorchScript errors alike
        raise MetastasisError(
            f"{where}: not a readable TorchScript file ({first_line(exc)})"
        ) from None
    raw: Any = files[EXTRA_FILE]
    text = raw.decode() if isinstance(raw, bytes) else raw
    return module.eval(), (json.loads(text) if text else {})
