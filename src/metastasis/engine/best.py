"""The checkpoint policy: which epoch the run keeps, and what its checkpoint holds.

The epoch with the highest validation ROC-AUC is kept (while the AUC is undefined, e.g. a
validation set of one class, the lowest validation loss). Its weights (the EMA's where there is
one) go into ``checkpoint.pt`` with the architecture, the preprocessing, the threshold and the
resolved config; finalisation later adds the test-time augmentation, the temperature and the
chosen threshold. Early stopping counts the epochs since the best one.

With stochastic weight averaging (``swa_epochs``) the best epoch is still tracked and saved
while the run goes (an interrupted run keeps it), but at the end the average of the last
epochs replaces it, whichever validates better: choosing between them on the validation set
would be a selection SWA is meant to make unnecessary, and would bias the validation numbers.
``metrics.json`` reports both (``swa``: the average's, the last and the best epoch's ROC-AUC).
Early stopping and SWA are refused together (``config.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metastasis.checkpoint import Bundle, save_checkpoint
from metastasis.config import TrainConfig
from metastasis.data.synthetic import is_synthetic
from metastasis.inference.batches import EpochOutput
from metastasis.transforms.presets import Preprocessing

log = logging.getLogger("metastasis.engine.trainer")  # the lines are the trainer's

SELECTED_BY = "val_roc_auc"


def score(row: Mapping[str, Any]) -> float:
    """Higher is better: the validation ROC-AUC, or minus the validation loss without one."""
    auc = float(row["val_roc_auc"])
    return auc if not math.isnan(auc) else -float(row["val_loss"])


@dataclass
class BestEpoch:
    """The best epoch so far: its score, its number (0: none yet) and its validation output."""

    score: float = -math.inf
    epoch: int = 0
    val: EpochOutput | None = None

    def update(self, epoch: int, row: Mapping[str, Any], val: EpochOutput) -> bool:
        """Keep ``epoch`` when it scores better than the best so far; whether it did."""
        new = score(row)
        if not new > self.score:
            return False
        self.score, self.epoch, self.val = new, epoch, val
        return True

    def should_stop(self, epoch: int, patience: int) -> bool:
        """Early stopping: ``patience`` epochs (0: never) without a better one; logs why."""
        if not patience or epoch - self.epoch < patience:
            return False
        log.info(
            "early stop after epoch %d: no better val AUC for %d epochs (best: epoch %d)",
            epoch,
            patience,
            self.epoch,
        )
        return True


def save_best_checkpoint(
    path: Path,
    cfg: TrainConfig,
    preprocessing: Preprocessing,
    state_dict: dict[str, torch.Tensor],
    epoch: int,
    row: Mapping[str, Any],
    arch: tuple[str, dict[str, Any]] | None = None,
    **extra: Any,
) -> None:
    """Write the kept epoch's weights as the run's checkpoint (a bundle: see ``checkpoint.py``);
    ``arch``: (architecture, arguments), else ``cfg.model``'s; ``extra`` joins its ``metrics``."""
    name, kwargs = arch or (cfg.model, cfg.model_kwargs)
    bundle = Bundle(
        arch=name,
        arch_kwargs=dict(kwargs),
        state_dict=state_dict,
        preprocessing=preprocessing,
        threshold=cfg.threshold,
        config=cfg.to_dict(),
        metrics={"epoch": epoch, SELECTED_BY: row[SELECTED_BY], **extra},
        synthetic=cfg.data is not None and is_synthetic(cfg.data),
    )
    save_checkpoint(path, bundle)
