"""Whole slides: where the metastases are, and how large (``metastasis slides``).

Modules: ``readers`` (one per backend: OpenSlide / tifffile / PIL, lazy regions read in
bounded pieces; ``open_slide`` picks one), ``resolution`` (microns per pixel from any
metadata), ``options`` (the declared options of a run), ``tissue`` (mask on a thumbnail),
``tiling`` (level, scale, tile grid, blocks), ``classify`` and ``fullyconv`` (probabilities per
tile, one pass per block where the model allows), ``regions`` (polygons, sizes, GeoJSON),
``staging`` (node category, pN stage), ``analyse`` (one slide), ``outputs`` (files of one
slide), ``run`` (folder runs), ``heatmap`` and ``report`` (figures).

Research use only: not a diagnosis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["SlideClassifier", "analyse_slide", "open_slide", "run_slides", "write_slide_outputs"]

_WHERE = {
    "SlideClassifier": "metastasis.slides.classify",
    "analyse_slide": "metastasis.slides.analyse",
    "open_slide": "metastasis.slides.readers",
    "run_slides": "metastasis.slides.run",
    "write_slide_outputs": "metastasis.slides.outputs",
}

if TYPE_CHECKING:
    from metastasis.slides.analyse import analyse_slide
    from metastasis.slides.classify import SlideClassifier
    from metastasis.slides.outputs import write_slide_outputs
    from metastasis.slides.readers import open_slide
    from metastasis.slides.run import run_slides


def __getattr__(name: str) -> Any:
    """Import lazily: the readers' libraries load only when used."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'metastasis.slides' has no attribute {name!r}")
