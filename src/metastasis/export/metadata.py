"""What an exported model carries about itself: preprocessing, decision rule, classes.

The same keys go into ONNX ``metadata_props`` and a TorchScript file's ``_extra_files``
(``metastasis.json``). ONNX stores strings only, so each value is written as JSON there and
``decode`` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from metastasis.checkpoint import Bundle

FORMAT = "metastasis-export/1"
INPUT_NAME = "image"
OUTPUT_NAME = "logit"


def export_metadata(bundle: Bundle) -> dict[str, Any]:
    """Everything needed to use the exported graph without this package."""
    p = bundle.preprocessing
    return {
        "format": FORMAT,
        "arch": bundle.arch,
        "arch_kwargs": bundle.arch_kwargs,
        "input_name": INPUT_NAME,
        "input_layout": "NCHW",
        "input_dtype": "float32",
        "input_size": p.input_size,
        "channel_order": "RGB",
        "source": "uint8 RGB patches, N x H x W x 3 (H&E, 96 x 96 in PCam)",
        "source_dtype": "uint8",
        "scale": 1.0 / 255.0,
        "mean": list(p.mean),
        "std": list(p.std),
        "resize": "bilinear (align_corners=False, no antialiasing) to input_size, "
        "only when the patch differs",
        "preprocessing": "x = (uint8 / 255 - mean) / std per channel, NHWC -> NCHW",
        "stain_normalisation": None if p.stain is None else p.stain.to_dict(),
        "mpp": p.mpp,
        "output_name": OUTPUT_NAME,
        "output": "logit of class_names[1], shape N; probability = sigmoid(logit / "
        "temperature); label = class_names[probability >= threshold]",
        "threshold": bundle.threshold,
        "temperature": bundle.temperature,
        "tta": bundle.tta,
        "invariance": _invariance(bundle.arch),
        "class_names": list(bundle.class_names),
        "versions": bundle.versions,
    }


def _invariance(arch: str) -> str:
    """``d4``: the graph gives the same logit for the 8 dihedral views of a patch."""
    from metastasis.models import MODELS

    return MODELS.get(arch).invariance if arch in MODELS else "none"


def encode(meta: Mapping[str, Any]) -> dict[str, str]:
    """Every value as JSON text (ONNX metadata holds strings)."""
    return {k: json.dumps(v) for k, v in meta.items()}


def decode(props: Mapping[str, str]) -> dict[str, Any]:
    """The values back from JSON; a value that is not JSON is kept as text."""
    out: dict[str, Any] = {}
    for k, v in props.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out
