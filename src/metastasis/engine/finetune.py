"""`metastasis train --encoder NAME --finetune-blocks N`: a foundation encoder's last blocks
fine-tuned with a head, through the normal patch trainer.

With ``finetune_blocks`` 0 an ``--encoder`` run is a probe on cached embeddings
(``engine.probe``). With N > 0 the run is an ordinary training run (``trainer.fit``: devices,
DDP, precision, augmentation, early stopping, EMA all apply) of the ``encoder-probe`` model
built with ``finetune_blocks=N`` (``models.encoder_probe``): the encoder from its local weight
file (SHA-256 checked and recorded), its last N blocks and final norm trainable at
``lr * encoder_lr_scale``, the head at ``lr``, the rest frozen. ``ModelChoice`` is what the
trainer builds and what its checkpoint records: the architecture, its arguments and the
preprocessing (for an encoder: its own normalisation and input size). ``config.yaml`` keeps the
options as given (``encoder``, ``weights``, ``finetune_blocks``), so the run can be re-run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from metastasis.config import TrainConfig
from metastasis.models import default_preprocessing
from metastasis.transforms.presets import Preprocessing

ARCH = "encoder-probe"


@dataclass(frozen=True)
class ModelChoice:
    """The model a run trains: ``create_model(arch, **kwargs)`` and its input."""

    arch: str
    kwargs: dict[str, Any]
    preprocessing: Preprocessing


def is_finetune(cfg: TrainConfig) -> bool:
    return bool(cfg.encoder and cfg.finetune_blocks)


def model_choice(cfg: TrainConfig) -> ModelChoice:
    """``cfg.model`` with its kwargs and preprocessing; for a fine-tune, the encoder-probe."""
    if is_finetune(cfg):
        return finetune_choice(cfg)
    pre = default_preprocessing(cfg.model)
    pre = dataclasses.replace(pre, input_size=cfg.input_size or pre.input_size, mpp=cfg.mpp)
    return ModelChoice(cfg.model, dict(cfg.model_kwargs), pre)


def finetune_choice(cfg: TrainConfig) -> ModelChoice:
    """The encoder resolved (spec with ``model_kwargs``/``input_size``; weight file located and
    hashed) into ``encoder-probe``'s arguments, as the checkpoint records them."""
    from metastasis.encoders.embed import resolve_encoder
    from metastasis.encoders.store import preprocessing_of
    from metastasis.models.encoder_probe import MLP_HIDDEN

    assert cfg.encoder is not None
    spec, weights = resolve_encoder(cfg.encoder, cfg.weights, cfg.model_kwargs, cfg.input_size)
    kwargs = {
        "encoder": spec.to_dict(),
        "weights": weights.label,
        "weights_sha256": weights.sha256,
        "head": cfg.head,
        "hidden": MLP_HIDDEN,
        "finetune_blocks": cfg.finetune_blocks,
    }
    return ModelChoice(ARCH, kwargs, preprocessing_of(spec, cfg.mpp))


def finetune_summary(cfg: TrainConfig) -> dict[str, Any]:
    """What ``metrics.json`` says of a fine-tune (empty for any other run)."""
    if not is_finetune(cfg):
        return {}
    n = cfg.finetune_blocks
    return {
        "finetune": {
            "encoder": cfg.encoder,
            "blocks": n,
            "encoder_lr_scale": cfg.encoder_lr_scale,
            "head": cfg.head,
            "description": f"fine-tuned the last {n} block{'s' if n != 1 else ''} of the "
            f"encoder and its final norm with the {cfg.head} head; the rest frozen",
        }
    }
