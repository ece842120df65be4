"""Train/validation splits, as row indices; written into the run folder as id lists."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from metastasis.errors import DataError

# The split names `metastasis train` looks for under --data and --val-data.
TRAIN_SPLITS = ("train",)
VAL_SPLITS = ("valid", "val", "validation")


def stratified_split(
    labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``labels``) of a seeded, stratified train/validation split."""
    if not 0 < val_fraction < 1:
        raise DataError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    pos = np.arange(len(labels))
    counts = np.bincount(labels, minlength=2)
    stratify = labels if counts.min() >= 2 else None
    try:
        train, val = train_test_split(
            pos, test_size=val_fraction, random_state=seed, shuffle=True, stratify=stratify
        )
    except ValueError as exc:
        raise DataError(
            f"cannot split {len(labels)} patches {val_fraction:.0%} for validation: {exc}"
        ) from None
    return np.sort(train), np.sort(val)
