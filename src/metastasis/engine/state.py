"""The full training state, saved after every epoch so a killed run can resume exactly.

``last.pt`` holds the weights, the optimiser, every random-number generator that decides data
order, augmentation and dropout, the history and the best epoch so far. Like checkpoints it
holds only tensors and plain values and loads with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metastasis.errors import CheckpointError
from metastasis.io import atomic_path

FORMAT = "metastasis-train-state/1"
FILENAME = "last.pt"


@dataclass
class TrainState:
    epoch: int  # last completed epoch
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor]  # "torch" (global), "loader", "augment"
    history: list[dict[str, Any]]
    best_score: float
    best_epoch: int
    best_probs: torch.Tensor
    best_labels: torch.Tensor
    fingerprints: dict[str, str]
    scheduler: dict[str, Any] | None = None
    ema: dict[str, torch.Tensor] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **self.__dict__}


def save_train_state(run_dir: Path, state: TrainState) -> Path:
    path = run_dir / FILENAME
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a full disk raises OSError
        torch.save(state.to_dict(), fh)
    return path


def load_train_state(run_dir: Path) -> TrainState | None:
    """The saved state, or None when no epoch finished before the run stopped."""
    path = run_dir / FILENAME
    if not path.is_file():
        return None
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or refused: never guess
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot resume from it ({first})") from None
    if not isinstance(raw, dict) or raw.pop("format", None) != FORMAT:
        raise CheckpointError(f"{path}: not a metastasis training state")
    try:
        return TrainState(**raw)
    except TypeError as exc:
        raise CheckpointError(f"{path}: malformed training state ({exc})") from None
