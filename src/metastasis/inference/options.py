"""The options every command that runs a checkpoint shares (predict, evaluate, explain, serve,
slides), declared once (`Settings`): their flags, ``--help`` defaults, docs and one-line errors
all come from here. Importing this module imports no torch (the command line parses with it).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from metastasis.config import Tta
from metastasis.settings import Settings, setting

Engine = Literal["auto", "onnxruntime", "torch", "torch-bf16", "int8"]
ENGINES: tuple[str, ...] = get_args(Engine)


class InferenceOptions(Settings):
    """How a checkpoint is run: engine, test-time augmentation, batch size, device, and the
    decision threshold where the checkpoint's is not wanted."""

    engine: Engine = setting(
        "auto",
        "auto: ONNX Runtime on a CPU, PyTorch on a GPU, both float32 and checked against "
        "PyTorch; torch-bf16 is faster where the hardware has bfloat16, not exact; int8 "
        "runs the run folder's int8 model (metastasis export --format int8), not exact",
        noun="engine",
    )
    tta: Tta | None = setting(
        None,
        "test-time augmentation: d4 averages the 8 rotations and flips",
        default_text="the checkpoint's",
        noun="test-time augmentation",
    )
    batch_size: int = setting(256, "patches (or tiles) per batch", ge=1)
    device: str = setting("auto", "auto, cpu, cuda, mps (or cuda:N)")
    threshold: float | None = setting(
        None,
        "decision threshold on the probability: label 1 at or above it",
        default_text="the checkpoint's",
        ge=0,
        le=1,
    )


NAMES = tuple(InferenceOptions.model_fields)


def inference_options(values: dict[str, Any]) -> InferenceOptions:
    """``values`` as checked options; ``None`` values take the defaults."""
    given = {k: v for k, v in values.items() if v is not None}
    return InferenceOptions.model_validate(given, context={"source": "options"})
