"""Figures to files: the one writer of matplotlib figures (PNG, atomically).

Plot functions (``metrics.plots``, ``eda.figures``, ``tune.plots``, ``reports.explanations``)
return a ``Figure`` and write nothing; reports call :func:`save_figure`.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from metastasis.io import atomic_path

__all__ = ["save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG atomically and return the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)
