"""The served model: a checkpoint loaded once, its predictions as JSON rows, its description.

Predictions run through `inference.predictor.Predictor` and its engine (`inference.runtime`),
with the checkpoint's test-time augmentation; the logits come back before the temperature so
that both probabilities are given: ``probability`` after the checkpoint's temperature (the
calibrated one, the number `metastasis predict` writes, compared with the threshold) and
``uncalibrated_probability`` (the model's own sigmoid, temperature 1).
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from metastasis.checkpoint import Bundle, checkpoint_path
from metastasis.inference.predictor import Predictor

MODEL_CARD = "MODEL_CARD.md"
METRICS = "metrics.json"  # the run folder's, beside checkpoint.pt


class ServedModel:
    """A checkpoint (or run folder) loaded once for the service."""

    def __init__(
        self,
        checkpoint: str | Path,
        engine: str = "auto",
        device: str = "auto",
        threshold: float | None = None,
    ) -> None:
        """``threshold`` replaces the checkpoint's decision threshold (None: keep it)."""
        self.path = checkpoint_path(checkpoint)
        self.predictor = Predictor.from_checkpoint(
            self.path, device=device, engine=engine, threshold=threshold
        )
        assert self.predictor.bundle is not None
        self.bundle: Bundle = self.predictor.bundle
        self.engine = self.predictor.engine.describe()
        self._explain_model: torch.nn.Module | None = None

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits before the temperature (TTA included) for uint8 N x 96 x 96 x 3 patches."""
        return self.predictor.logits(images)

    def rows(self, ids: list[str], logits: np.ndarray) -> list[dict[str, Any]]:
        """One JSON row per patch: probabilities and labels as the predictor computes them."""
        p = self.predictor
        calibrated = p.probabilities(logits)
        uncalibrated = p.probabilities(logits, temperature=1.0)
        labels = p.decide(calibrated)
        names = self.bundle.class_names
        out = []
        for i, name in enumerate(ids):
            label = int(labels[i])
            out.append(
                {
                    "id": name,
                    "probability": float(calibrated[i]),
                    "uncalibrated_probability": float(uncalibrated[i]),
                    "label": label,
                    "class_name": names[label] if label < len(names) else str(label),
                    "threshold": float(p.threshold),
                    "engine": self.engine,
                }
            )
        return out

    def overlays(self, images: np.ndarray) -> list[dict[str, Any]]:
        """Grad-CAM overlays and the patches themselves, as PNG data URLs."""
        from metastasis.inference.explain import cam_empty, gradcam, overlay

        if self._explain_model is None:  # eager PyTorch, whatever engine predicts
            self._explain_model = self.bundle.build_model().to(self.predictor.device)
        heat = gradcam(
            self._explain_model,
            images,
            preprocessing=self.bundle.preprocessing,
            arch=self.bundle.arch,
        )
        return [
            {
                "overlay": png_data_url(overlay(img, h)),
                "patch": png_data_url(img),
                "cam_empty": bool(cam_empty(h)),  # a zero map: nothing to show, said in words
            }
            for img, h in zip(images, heat, strict=True)
        ]

    def describe(self) -> dict[str, Any]:
        """What `GET /v1/model` answers: architecture, preprocessing, decision, the checkpoint's
        metrics, the run folder's validation metrics (with 95% intervals) and model card."""
        b = self.bundle
        card = self.path.parent / MODEL_CARD
        pre = b.preprocessing.to_dict()
        return {
            "architecture": b.arch,
            "synthetic": b.synthetic,
            "warning": b.warning,
            "arch_kwargs": jsonable(b.arch_kwargs),
            "checkpoint": self.path.name,
            "preprocessing": {
                **jsonable(pre),
                "input": "96x96 RGB patches, 8 bits per sample (PNG, JPEG or TIFF)",
                "scaling": "pixels / 255, then (x - mean) / std per channel, "
                f"resized to {pre['input_size']}x{pre['input_size']}",
            },
            "threshold": float(self.predictor.threshold),
            "checkpoint_threshold": float(b.threshold),
            "temperature": float(b.temperature),
            "tta": b.tta,
            "class_names": list(b.class_names),
            "engine": self.engine,
            "metrics": jsonable(b.metrics),
            "validation": self._validation(),
            "versions": jsonable(b.versions),
            "model_card": card.read_text(encoding="utf-8") if card.is_file() else None,
        }

    def _validation(self) -> dict[str, Any] | None:
        """The run folder's validation metrics (``metrics.json``, key ``val``), if it has them."""
        path = self.path.parent / METRICS
        try:
            val = json.loads(path.read_text(encoding="utf-8")).get("val")
        except (OSError, ValueError, AttributeError):
            return None
        return jsonable(val) if isinstance(val, dict) else None


def png_data_url(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays unwrapped, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
