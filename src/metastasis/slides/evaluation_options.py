"""The options of ``metastasis slides-eval``, declared once (`Settings`): the command's flags, its
``--help`` and its one-line errors derive from this declaration; ``evaluate_slides`` takes the
same names as keywords."""

from __future__ import annotations

import os
from typing import Any

from metastasis.settings import Settings, setting


class EvalOptions(Settings):
    """How a slides run is measured against annotations (``metastasis slides-eval``)."""

    labels: str | None = setting(
        None, "CSV of slide labels (slide,label: Tumor/Normal or 1/0; CAMELYON16's reference.csv)",
        default_text="a slide with an annotation file is tumour", metavar="CSV",
    )  # fmt: skip
    stages: str | None = setting(
        None, "CAMELYON17-style stage CSV (patient,stage: patient_X.zip,pN1 and "
        "patient_X_node_Y.tif,micro rows)", metavar="CSV",
    )  # fmt: skip
    patients: str | None = setting(
        None, "CSV slide,patient linking slides to patients", metavar="CSV",
        default_text="from the stage CSV's patient_X_node_Y names",
    )  # fmt: skip
    smooth: float = setting(0.0, "Gaussian smoothing of the map before finding detections, "
                            "sigma in tiles (0: none)", ge=0, le=50)  # fmt: skip
    floor: float = setting(0.1, "detections: local maxima at or above this probability",
                           ge=0, le=1)  # fmt: skip
    radius_um: float = setting(200.0, "detections: a local maximum is the largest within this "
                               "distance, um (at least one tile)", gt=0)  # fmt: skip
    threshold: float | None = setting(
        None, "probability threshold of the pixel (tile) map for Dice and IoU", ge=0, le=1,
        default_text="the run's",
    )  # fmt: skip
    slide_threshold: float | None = setting(
        None, "slide score at or above which a slide is called tumour (accuracy)",
        default_text="the run's threshold",
    )  # fmt: skip
    mask_downsample: float | None = setting(
        None, "level-0 pixels per pixel of mask-image annotations (<slide>.png/.tif)",
        default_text="masks not read", gt=0,
    )  # fmt: skip
    resamples: int = setting(1000, "bootstrap resamples (of slides) for the intervals", ge=1,
                             le=100_000)  # fmt: skip
    seed: int = setting(0, "bootstrap seed")


NAMES = tuple(EvalOptions.model_fields)


def eval_options(values: dict[str, Any]) -> EvalOptions:
    """``values`` as checked options; ``None`` values take the defaults."""
    given = {k: os.fspath(v) if isinstance(v, os.PathLike) else v
             for k, v in values.items() if v is not None}  # fmt: skip
    return EvalOptions.model_validate(given, context={"source": "options"})
