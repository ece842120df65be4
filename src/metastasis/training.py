"""`metastasis.train`: training and its report, the call behind `metastasis train` and `tune`.

``train`` is ``engine.trainer.fit`` (which writes the run's data files: config, splits,
history, metrics, predictions, checkpoint, exports) followed by ``reports.run.write_run_report``
(figures and ``report.html``). It lives above both, so the engine never imports the reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from metastasis.config import TrainConfig
from metastasis.engine.trainer import RunResult, fit

__all__ = ["train"]


def train(
    cfg: TrainConfig,
    *,
    progress: bool = True,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train ``cfg.model`` on ``cfg.data`` and write a complete run folder with its report.

    ``on_epoch_end(epoch, history_row)`` is called after each epoch (it may raise to stop the
    run); ``resume`` continues the stopped run in ``cfg.out`` (see :func:`fit`). In the other
    processes of a DDP run only rank 0 writes the report.
    """
    from metastasis.reports.run import write_run_report

    result = fit(cfg, progress=progress, on_epoch_end=on_epoch_end, resume=resume)
    if result.is_global_zero:
        write_run_report(result, cfg)
    return result
