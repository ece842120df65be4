"""Predictions from a run folder's ``model.onnx`` without importing PyTorch: fast start-up.

Importing PyTorch costs about 4 CPU seconds on the 2-core CPU, more than predicting a handful
of images takes; a user running ``metastasis predict`` on one image (or a SLURM array of
thousands of small jobs) pays it every time. ``LightPredictor.from_run`` runs the run folder's
``model.onnx`` with ONNX Runtime straight away, reading the checkpoint's threshold, temperature,
test-time augmentation and preprocessing with ``checkpoint.read_checkpoint_meta`` (no PyTorch,
no weights read). It gives the same numbers as ``Predictor``'s ``onnxruntime`` engine: the
preprocessing below is the same float32 arithmetic as ``transforms.presets.Preprocessing``.

Exactness: the ``onnxruntime`` engine of ``Predictor`` checks ``model.onnx`` against PyTorch on a
probe before using it, which needs PyTorch. Here that check is not run again; the parity check
that training ran when it wrote ``model.onnx`` (``export.bundle.write_run_exports``: its logits
within 1e-4 of PyTorch's on real patches, or not written) stands for it, and it is used only
when it is known to belong to this checkpoint: ``model.onnx`` is not older than
``checkpoint.pt`` (a checkpoint rewritten after the export, e.g. recalibrated, is newer), and
the graph's metadata (architecture and its arguments, preprocessing, threshold, temperature,
test-time augmentation, class names) equals the checkpoint's. Otherwise, or for an engine or
device other than ONNX Runtime on the CPU, or where a GPU may be present (``device="auto"``
would choose it), ``from_run`` returns None with its reason and the caller uses ``Predictor``.
The engine's description says which check stands behind it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.checkpoint import FILENAME, CheckpointMeta, checkpoint_path, read_checkpoint_meta
from metastasis.errors import MetastasisError, first_line

log = logging.getLogger(__name__)

RUN_ONNX = "model.onnx"  # as export.onnx.RUN_ONNX (that module imports PyTorch)
INPUT_NAME, OUTPUT_NAME = "image", "logit"  # as export.metadata
GPU_NODES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd", "/proc/driver/nvidia/version")
_SAME = ("arch", "arch_kwargs", "input_size", "mean", "std", "mpp", "threshold", "temperature",
         "tta", "class_names")  # fmt: skip


def gpu_may_be_present() -> bool:
    """Whether ``device="auto"`` could choose a GPU here: an NVIDIA or ROCm device node, or
    Apple silicon (MPS). Without one, PyTorch would choose the CPU."""
    if any(os.path.exists(node) for node in GPU_NODES):
        return True
    return sys.platform == "darwin" and platform.machine() == "arm64"


def onnx_threads() -> int:
    """The threads PyTorch would give ONNX Runtime: ``$OMP_NUM_THREADS``, else 0 (ONNX
    Runtime's own default: one per physical core, as PyTorch's)."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def _expected(meta: CheckpointMeta) -> dict[str, Any]:
    pre = meta.preprocessing
    values = {
        "arch": meta.arch, "arch_kwargs": meta.arch_kwargs, "input_size": pre["input_size"],
        "mean": list(pre["mean"]), "std": list(pre["std"]), "mpp": pre["mpp"],
        "threshold": meta.threshold, "temperature": meta.temperature, "tta": meta.tta,
        "class_names": list(meta.class_names),
    }  # fmt: skip
    return json.loads(json.dumps(values))  # as the ONNX metadata holds them (JSON)


def _mismatch(meta: CheckpointMeta, props: dict[str, str]) -> str | None:
    """The first metadata key where ``model.onnx`` and the checkpoint differ, if any."""
    for key, value in _expected(meta).items():
        try:
            stored = json.loads(props[key])
        except (KeyError, ValueError):
            return f"its metadata has no {key}"
        if stored != value:
            return f"its {key} ({stored!r:.40}) is not the checkpoint's ({value!r:.40})"
    return None


def _usable_onnx(checkpoint: Any, engine: str, device: str) -> tuple[Path, Path] | str:
    """(checkpoint.pt, model.onnx) when the light path may be taken, else why not."""
    if engine not in ("auto", "onnxruntime"):
        return f"engine {engine}"
    if device not in ("auto", "cpu"):
        return f"device {device}"
    if device == "auto" and gpu_may_be_present():
        return "a GPU may be present (device auto)"
    if not isinstance(checkpoint, (str, Path)):
        return "not a checkpoint file"
    ckpt = checkpoint_path(checkpoint)
    onnx_file = ckpt.parent / RUN_ONNX
    if ckpt.name != FILENAME or not onnx_file.is_file() or not ckpt.is_file():
        return f"no {RUN_ONNX} beside the checkpoint"
    if onnx_file.stat().st_mtime < ckpt.stat().st_mtime:
        return f"{RUN_ONNX} is older than {FILENAME}"
    return ckpt, onnx_file


@dataclass
class LightPredictor:
    """Probabilities of tumour for uint8 patches (N x 96 x 96 x 3) from ``model.onnx``."""

    session: Any
    meta: CheckpointMeta
    source: Path
    threshold: float
    tta: str
    batch_size: int = 256

    @classmethod
    def from_run(
        cls,
        checkpoint: Any,
        *,
        engine: str = "auto",
        device: str = "auto",
        tta: str | None = None,
        threshold: float | None = None,
        batch_size: int = 256,
    ) -> LightPredictor | None:
        """The light predictor of a run folder (or its ``checkpoint.pt``), or None (logged at
        debug level with the reason) when ``Predictor`` must be used (see the module notes)."""
        found = _usable_onnx(checkpoint, engine, device)
        try:
            if isinstance(found, str):
                raise MetastasisError(found)
            ckpt, onnx_file = found
            meta = read_checkpoint_meta(ckpt)
            if meta.preprocessing["input_size"] != 96:
                raise MetastasisError("the model resizes patches (PyTorch's interpolation)")
            if meta.preprocessing["stain"] is not None:
                raise MetastasisError("the model normalises stains (transforms.stain, PyTorch)")
            session = _session(onnx_file)
            props = dict(session.get_modelmeta().custom_metadata_map)
            why = _mismatch(meta, props)
            if why is not None:
                raise MetastasisError(f"{RUN_ONNX}: {why}")
        except Exception as exc:  # any reason at all: the full path decides and says why
            log.debug("start-up without PyTorch not taken: %s", first_line(exc, with_type=True))
            return None
        tta = meta.tta if tta is None else tta
        if props.get("invariance") == json.dumps("d4"):  # as models.effective_tta decides
            tta = "none"
        return cls(
            session, meta, onnx_file, meta.threshold if threshold is None else threshold,
            tta, batch_size,
        )  # fmt: skip

    def describe(self) -> str:
        return (
            f"onnxruntime (float32) from {self.source}, checked against PyTorch when training "
            "exported it (not checked again: started without PyTorch)"
        )

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 NHWC -> float32 NCHW, the arithmetic of ``Preprocessing``."""
        pre = self.meta.preprocessing
        x = images.astype(np.float32) / np.float32(255.0)
        if tuple(pre["mean"]) != (0.0, 0.0, 0.0) or tuple(pre["std"]) != (1.0, 1.0, 1.0):
            x -= np.asarray(pre["mean"], np.float32)
            x /= np.asarray(pre["std"], np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def _run(self, images: np.ndarray) -> np.ndarray:
        out = [
            self.session.run(None, {INPUT_NAME: self._prepare(images[i : i + self.batch_size])})[0]
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out).reshape(-1).astype(np.float32)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits before the temperature, test-time augmentation included."""
        if len(images) == 0:
            return np.zeros(0, np.float32)
        if self.tta != "d4":
            return self._run(images)
        views = []
        for k in range(8):  # transforms.augment.d4_view: k % 4 quarter turns, then a flip
            view = np.rot90(images, k % 4, axes=(1, 2))
            views.append(self._run(np.ascontiguousarray(view[:, :, ::-1] if k >= 4 else view)))
        return np.stack(views).mean(0, dtype=np.float32)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Probabilities after the checkpoint's temperature (float32, as ``Predictor``)."""
        z = self.logits(images)
        if self.meta.temperature != 1.0:
            z = z / np.float32(self.meta.temperature)
        return (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)


def _session(onnx_file: Path) -> Any:
    """An ONNX Runtime CPU session, set up as ``export.onnx.onnx_session`` sets one up."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = onnx_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(os.fspath(onnx_file), options, providers=["CPUExecutionProvider"])
