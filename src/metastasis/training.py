"""`metastasis.train`: training and its report, the call behind `metastasis train` and `tune`.

``train`` is ``engine.trainer.fit`` (which writes the run's data files: config, splits,
history, metrics, predictions, checkpoint, exports) with the experiment trackers of
``cfg.loggers`` on its epochs (``engine.loggers``), followed by ``reports.run.write_run_report``
(figures and ``report.html``), whose outputs the trackers then log as artifacts. It lives above
the engine and the reports, so the engine never imports the reports. ``prepare_tracking``
(creating the tracking store and experiment once, before a search's workers start) is passed
on from ``engine.loggers`` for ``tune``, which trains only through this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from metastasis.config import TrainConfig
from metastasis.engine.loggers import open_loggers, prepare_tracking
from metastasis.engine.trainer import RunResult, default_run_dir, fit

__all__ = ["prepare_tracking", "train"]


def train(
    cfg: TrainConfig,
    *,
    progress: bool = True,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    tracking: Mapping[str, Any] | None = None,
) -> RunResult:
    """Train ``cfg.model`` on ``cfg.data`` and write a complete run folder with its report.

    ``on_epoch_end(epoch, history_row)`` is called after each epoch (it may raise to stop the
    run); ``resume`` continues the stopped run in ``cfg.out`` (see :func:`fit`). In the other
    processes of a DDP run only rank 0 writes the report. ``tracking``: keyword options of
    ``engine.loggers.open_loggers`` (experiment, run name, tags, store folder; a search sets them).
    """
    from metastasis.reports.run import write_run_report

    cfg = cfg.replace(out=cfg.out or str(default_run_dir(cfg.model)))
    assert cfg.out is not None
    with open_loggers(cfg, Path(cfg.out), resume, **(tracking or {})) as trackers:
        hook = trackers.chain(on_epoch_end)
        result = fit(cfg, progress=progress, on_epoch_end=hook, resume=resume)
        if result.is_global_zero:
            write_run_report(result, cfg)
            trackers.finish(result.run_dir, result.metrics)
    return result
