"""`metastasis.train`: training and its report, the call behind `metastasis train` and `tune`.

``fit`` (``metastasis.fit``) is ``engine.trainer.fit`` (which writes the run's data files:
config, splits, history, metrics, predictions, checkpoint) followed by the run's exports
(``export.bundle.write_run_exports``: ``model.onnx`` and ``MODEL_CARD.md``). ``train`` is ``fit``
with the experiment trackers of ``cfg.loggers`` on its epochs (``engine.loggers``), followed by
``reports.run.write_run_report`` (figures and ``report.html``), whose outputs the trackers then
log as artifacts. It lives above the engine, the exports and the reports, so the engine imports
none of them. ``prepare_tracking``
(creating the tracking store and experiment once, before a search's workers start) is passed
on from ``engine.loggers`` for ``tune``, which trains only through this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.config import TrainConfig
from metastasis.engine.loggers import open_loggers, prepare_tracking
from metastasis.engine.trainer import RunResult, default_run_dir
from metastasis.engine.trainer import fit as fit_engine
from metastasis.export.bundle import N_PROBE, write_run_exports
from metastasis.export.quantize import card_line, write_run_int8

__all__ = ["fit", "prepare_tracking", "train"]


def fit(
    cfg: TrainConfig,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    resume: bool = False,
) -> RunResult:
    """Train ``cfg.model`` on ``cfg.data`` and write the run folder's data files and exports.

    ``engine.trainer.fit`` (``on_epoch_end(epoch, history_row)`` after each epoch's validation,
    which may raise to stop the run; ``resume`` continues the run in ``cfg.out`` from its last
    completed epoch, to the same numbers), then ``model.int8.xml`` (the int8 engine's model,
    calibrated on 300 training patches, where OpenVINO and NNCF are installed: see
    ``export.quantize.write_run_int8``), ``model.onnx`` (checked on the first ``N_PROBE``
    validation patches) and ``MODEL_CARD.md``, written by rank 0 only; no figures and no
    ``report.html`` (:func:`train` adds them).
    """
    if cfg.encoder and not cfg.finetune_blocks:  # a probe on cached embeddings (engine.probe)
        return _fit_probe(cfg, progress)
    result = fit_engine(cfg, progress=progress, on_epoch_end=on_epoch_end, resume=resume)
    if result.is_global_zero and result.data is not None:
        data = result.data
        probe = np.asarray(data.val.images[data.val_idx[:N_PROBE]])
        int8 = write_run_int8(result.run_dir, data.train.images, data.train_idx,
                              data.train.name, probe)  # fmt: skip
        write_run_exports(result.run_dir, probe, (card_line(int8),) if int8 else ())
    return result


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

    if cfg.encoder and not cfg.finetune_blocks:  # a probe: no epochs to track or plot
        return _fit_probe(cfg, progress)
    cfg = cfg.replace(out=cfg.out or str(default_run_dir(_run_name(cfg))))
    assert cfg.out is not None
    with open_loggers(cfg, Path(cfg.out), resume, **(tracking or {})) as trackers:
        hook = trackers.chain(on_epoch_end)
        result = fit(cfg, progress=progress, on_epoch_end=hook, resume=resume)
        if result.is_global_zero:
            write_run_report(result, cfg)
            trackers.finish(result.run_dir, result.metrics)
    return result


def _run_name(cfg: TrainConfig) -> str:
    """The model, or for a fine-tuned encoder ``finetune-ENCODER``."""
    if not cfg.encoder:
        return cfg.model
    return "finetune-" + cfg.encoder.replace(":", "-").replace("/", "-")


def _fit_probe(cfg: TrainConfig, progress: bool) -> RunResult:
    """``engine.probe.train_probe`` and the run's ``MODEL_CARD.md`` (the encoder's licence is
    in it); no ``model.onnx`` (an encoder's ONNX is large: ``metastasis export`` writes it)."""
    from metastasis.checkpoint import FILENAME, load_checkpoint
    from metastasis.engine.probe import train_probe
    from metastasis.export.model_card import FILENAME as CARD
    from metastasis.export.model_card import read_run_info, write_model_card

    result = train_probe(cfg, progress=progress)
    run = result.run_dir
    metrics, data_info = read_run_info(run)
    files = [f"`{FILENAME}`: the probe's head, the encoder's spec, weight file and SHA-256"]
    write_model_card(run / CARD, load_checkpoint(run / FILENAME), metrics, data_info, files)
    return result
