"""The torch view of a cached split: uint8 patches and labels, fetched a batch at a time."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from metastasis.data.cache import CachedSplit


class PatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Rows ``indices`` of a cached split.

    ``dataset[i]`` is ``(uint8 tensor 96x96x3, label)``. With a batch sampler, the DataLoader calls
    ``__getitems__`` once per batch, which reads all rows of the batch from the memory map in one
    sorted fancy-index (no per-sample Python decode); use ``collate=passthrough``.
    """

    def __init__(self, cached: CachedSplit, indices: np.ndarray | None = None) -> None:
        self.cached = cached
        self.indices = cached.usable_indices() if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> np.ndarray:
        return self.cached.labels[self.indices]

    @property
    def ids(self) -> np.ndarray:
        return self.cached.ids[self.indices]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.indices[i])
        return (
            torch.from_numpy(np.array(self.cached.images[row])),
            torch.tensor(int(self.cached.labels[row])),
        )

    def __getitems__(self, batch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.indices[np.asarray(batch)]
        order = np.argsort(rows, kind="stable")
        images = np.empty((len(rows), *self.cached.images.shape[1:]), dtype=np.uint8)
        images[order] = self.cached.images[rows[order]]
        return torch.from_numpy(images), torch.from_numpy(self.cached.labels[rows].astype(np.int64))


def passthrough(batch: Any) -> Any:
    """Collate function for datasets whose ``__getitems__`` already returns a batch."""
    return batch
