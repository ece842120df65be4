"""Classification metrics (pure compute). Plot functions live in :mod:`metastasis.metrics.plots`.

Plots are not re-exported here so that computing metrics (e.g. inside a training loop) does not
import matplotlib.
"""

from metastasis.metrics.classification import (
    binary_metrics,
    check_binary_inputs,
    pr_points,
    roc_points,
)

__all__ = ["binary_metrics", "check_binary_inputs", "pr_points", "roc_points"]
