"""The options of `metastasis ensemble`, declared once (type, allowed values, default, help) like
the training settings in `metastasis.config`; the command's flags derive from them. How the
ensemble's models run (engine, batch size, device) are `inference.options.InferenceOptions`.
Importing this module imports no torch (the command line parses with it).
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from metastasis.config import Tta
from metastasis.errors import MetastasisError
from metastasis.settings import Settings, setting


class EnsembleOptions(Settings):
    """How the ensemble's decision threshold, test-time augmentation and cost are chosen."""

    threshold_method: str = setting(
        "youden",
        "with --val-data: how the decision threshold is chosen on it (as in training: youden, "
        "sensitivity:S, screening:S, bagged:M; fixed: the mean of the members' thresholds); "
        "without --val-data the mean of the members' thresholds",
    )
    tta: Tta | None = setting(
        None,
        "the ensemble's test-time augmentation (d4: mean logit of the 8 dihedral views)",
        default_text="the members' when they all have the same, else none",
        noun="test-time augmentation",
    )
    cost_patches: int = setting(
        256, "patches the cost per patch of the ensemble and of each member is timed on", ge=1
    )

    @field_validator("threshold_method")
    @classmethod
    def _known_threshold_method(cls, value: str) -> str:
        from metastasis.metrics.thresholds import parse_threshold_method

        try:
            parse_threshold_method(value)
        except MetastasisError as err:
            raise ValueError(str(err)) from None
        return value


NAMES = tuple(EnsembleOptions.model_fields)


def ensemble_options(values: dict[str, Any]) -> EnsembleOptions:
    """``values`` as checked options; ``None`` values take the defaults."""
    given = {k: v for k, v in values.items() if v is not None}
    return EnsembleOptions.model_validate(given, context={"source": "options"})
