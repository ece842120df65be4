"""A loaded model plus its preprocessing: probabilities for uint8 patches."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from metastasis.data.cache import CachedSplit
from metastasis.data.dataset import PatchDataset, passthrough
from metastasis.engine.checkpoint import FILENAME, Bundle, checkpoint_path, load_checkpoint
from metastasis.engine.loop import TTA_MODES, EpochOutput, predict
from metastasis.engine.memory import configure_malloc
from metastasis.errors import MetastasisError
from metastasis.export.onnx import RUN_ONNX
from metastasis.inference.runtime import Engine, make_engine
from metastasis.transforms.presets import Preprocessing


def auto_device(device: str = "auto") -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Predictor:
    """Probabilities of tumour for batches of 96x96 RGB uint8 patches (N x H x W x 3).

    ``tta="d4"`` averages the logits of the 8 dihedral views; ``temperature`` divides the
    logits (temperature scaling). A checkpoint supplies both, and its threshold, by default.
    ``engine`` (``inference.runtime.ENGINES``): ``auto`` runs ONNX Runtime on a CPU, PyTorch
    elsewhere; ``self.engine.describe()`` says which.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocessing: Preprocessing,
        threshold: float = 0.5,
        device: str = "auto",
        batch_size: int = 256,
        tta: str = "none",
        temperature: float = 1.0,
        engine: str = "auto",
        onnx_file: str | Path | None = None,
    ) -> None:
        if tta not in TTA_MODES:
            raise MetastasisError(f"unknown tta {tta!r}; known: {', '.join(TTA_MODES)}")
        configure_malloc()
        self.device = auto_device(device)
        # the engine puts the model in eval mode, on the device, in channels-last memory
        self.engine: Engine = make_engine(model, preprocessing, self.device, engine, onnx_file)
        self.model = model
        self.preprocessing = preprocessing
        self.threshold = threshold
        self.batch_size = batch_size
        self.tta = tta
        self.temperature = temperature
        self.bundle: Bundle | None = None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        batch_size: int = 256,
        tta: str | None = None,
        engine: str = "auto",
    ) -> Predictor:
        """The checkpoint's model, preprocessing, threshold, temperature and (unless ``tta`` is
        given) test-time augmentation; ONNX Runtime runs the run folder's ``model.onnx`` where
        training wrote one (checked against the checkpoint first)."""
        bundle = load_checkpoint(path)
        ckpt = checkpoint_path(path)
        onnx_file = ckpt.parent / RUN_ONNX if ckpt.name == FILENAME else None
        self = cls(
            bundle.build_model(),
            bundle.preprocessing,
            bundle.threshold,
            device,
            batch_size,
            tta=bundle.tta if tta is None else tta,
            temperature=bundle.temperature,
            engine=engine,
            onnx_file=onnx_file,
        )
        self.bundle = bundle
        return self

    def predict_proba(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Probabilities for an in-memory batch of uint8 patches."""
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
        if x.ndim == 3:
            x = x.unsqueeze(0)
        batches = [
            (x[i : i + self.batch_size], torch.full((min(self.batch_size, len(x) - i),), -1))
            for i in range(0, len(x), self.batch_size)
        ]
        return self._predict(batches).probs

    def _predict(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> EpochOutput:
        return predict(
            self.engine, batches, self.preprocessing, self.device, self.tta, self.temperature
        )

    def predict_split(
        self, data: CachedSplit, indices: np.ndarray | None = None, progress: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (and labels, -1 when unlabelled) for the usable rows of a cached split."""
        ds = PatchDataset(data, indices)
        loader = DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=passthrough,
            pin_memory=self.device.type == "cuda",
        )
        bar = tqdm(loader, desc="predicting", unit="batch", disable=not progress, leave=False)
        out = self._predict(bar)
        return out.probs, out.labels
