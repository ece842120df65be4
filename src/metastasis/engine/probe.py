"""`metastasis train --encoder NAME`: a probe on a frozen encoder's cached embeddings.

eva's protocol for patch classification: the encoder is frozen and run once (the embedding
store, ``metastasis.encoders.store``); a head (linear, or one hidden layer) is trained on the
embeddings with AdamW (lr 3e-4, no weight decay, batches of 256), keeping the epoch of best
validation balanced accuracy and stopping after 20% of ``probe_epochs`` without a better one;
``probe_seeds`` heads from consecutive seeds, all reported, the best on validation kept. The
checkpoint is an ``encoder-probe`` bundle: the head's weights, the encoder's spec, weight path
and SHA-256, and its preprocessing, which evaluate, predict, slides, serve and export read
like any other checkpoint (they rebuild the encoder from the recorded file).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from metastasis.checkpoint import FILENAME, Bundle, save_checkpoint
from metastasis.config import TrainConfig
from metastasis.data.synthetic import is_synthetic
from metastasis.encoders.embed import embed_split, resolve_encoder
from metastasis.encoders.store import preprocessing_of
from metastasis.engine.data import open_training_data
from metastasis.engine.run_folder import write_run_inputs
from metastasis.engine.trainer import RunResult, default_run_dir
from metastasis.errors import MetastasisError
from metastasis.io import atomic_write_json, output_dir
from metastasis.metrics.classification import binary_metrics
from metastasis.metrics.evaluation import evaluation_metrics
from metastasis.metrics.thresholds import select_threshold
from metastasis.models.encoder_probe import MLP_HIDDEN, make_head
from metastasis.predictions import predictions_frame, write_table

log = logging.getLogger(__name__)
BATCH = 256  # eva's base batch size for patch-level probes
PATIENCE_FRACTION = 0.2  # eva: early stopping after 20% of the maximum epochs


@dataclass
class Probe:
    head: nn.Module
    seed: int
    best_epoch: int
    epochs: int
    seconds: float
    val_probs: np.ndarray
    history: list[dict[str, Any]]


def fit_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    head: str = "linear",
    lr: float = 3e-4,
    max_epochs: int = 100,
    seed: int = 0,
) -> Probe:
    """One head trained on embeddings (see the module doc); pure compute, no files."""
    start = time.perf_counter()
    xt, yt = torch.from_numpy(np.asarray(x_train, np.float32)), torch.from_numpy(y_train)
    xv, yv = torch.from_numpy(np.asarray(x_val, np.float32)), np.asarray(y_val)
    yt = yt.float()
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_head(head, xt.shape[1], MLP_HIDDEN)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    patience = max(1, math.ceil(PATIENCE_FRACTION * max_epochs))
    best: tuple[float, float] = (-1.0, -math.inf)  # (balanced accuracy, -loss)
    best_state, best_epoch, history = None, 0, []
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), BATCH):
            idx = order[i : i + BATCH]
            loss = F.binary_cross_entropy_with_logits(model(xt[idx]).squeeze(1), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        probs, val_loss = _validate(model, xv, yv)
        bal = binary_metrics(yv, probs)["balanced_accuracy"] or 0.0
        history.append({"seed": seed, "epoch": epoch, "val_loss": val_loss, "val_bal_acc": bal})
        if (bal, -val_loss) > best:
            best, best_epoch = (bal, -val_loss), epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if epoch - best_epoch >= patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    probs, _ = _validate(model, xv, yv)
    return Probe(model.eval(), seed, best_epoch, epoch, time.perf_counter() - start, probs, history)


def _validate(model: nn.Module, x: torch.Tensor, y: np.ndarray) -> tuple[np.ndarray, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x).squeeze(1)
    loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(y).float())
    return torch.sigmoid(logits).numpy().astype(np.float64), float(loss)


def train_probe(cfg: TrainConfig, progress: bool = True) -> RunResult:
    """Embed (or reuse the stores), train ``cfg.probe_seeds`` heads, write the run folder:
    config, data summary, splits, ``probe_seeds.csv``, ``history.csv``, ``metrics.json``,
    ``val_predictions.csv`` and ``checkpoint.pt``."""
    assert cfg.encoder is not None
    if cfg.weights is None:
        log.info("no --weights: looking in $METASTASIS_WEIGHTS_DIR and the Hugging Face cache")
    spec, weights = resolve_encoder(cfg.encoder, cfg.weights, cfg.model_kwargs, cfg.input_size)
    safe = spec.name.replace(":", "-").replace("/", "-")
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(f"probe-{safe}")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise MetastasisError(f"{run_dir}: run folder already exists and is not empty")
    output_dir(run_dir, "run folder")
    cfg = cfg.replace(out=str(run_dir))
    data = open_training_data(cfg, progress)
    batch = cfg.eval_batch_size or 64
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    train_store = embed_split(
        data.train, spec, weights, cfg.cache_dir, batch_size=batch, progress=progress
    )
    val_store = embed_split(
        data.val, spec, weights, cfg.cache_dir, batch_size=batch, progress=progress
    )
    if train_store is None or val_store is None:  # only a --shard run leaves a store unfinished
        raise MetastasisError("the embedding store is incomplete; run `metastasis embed` first")
    embed_seconds = time.perf_counter() - start
    write_run_inputs(run_dir, cfg, data)
    x_tr = np.asarray(train_store.embeddings[data.train_idx])
    x_va = np.asarray(val_store.embeddings[data.val_idx])
    y_tr, y_va = data.train_labels.astype(np.int64), data.val.labels[data.val_idx].astype(np.int64)
    kw = {"head": cfg.head, "lr": cfg.probe_lr, "max_epochs": cfg.probe_epochs}
    probes = [
        fit_probe(x_tr, y_tr, x_va, y_va, seed=s, **kw)  # type: ignore[arg-type]
        for s in range(cfg.seed, cfg.seed + cfg.probe_seeds)
    ]
    return _write_run(cfg, run_dir, data, spec, weights, probes, y_va, embed_seconds)


def _write_run(
    cfg: TrainConfig,
    run_dir: Path,
    data: Any,
    spec: Any,
    weights: Any,
    probes: list[Probe],
    y_val: np.ndarray,
    embed_seconds: float,
) -> RunResult:
    rows = []
    for p in probes:
        m = evaluation_metrics(y_val, p.val_probs, 0.5, n_resamples=0)
        rows.append(
            {
                "seed": p.seed,
                "best_epoch": p.best_epoch,
                "epochs": p.epochs,
                "seconds": round(p.seconds, 3),
                "val_roc_auc": m["roc_auc"],
                "val_balanced_accuracy": m["balanced_accuracy"],
            }
        )
    table = pd.DataFrame(rows)
    best = probes[int(table["val_roc_auc"].fillna(-1).to_numpy().argmax())]
    threshold, method = cfg.threshold, "fixed"
    if cfg.threshold_method != "fixed":
        threshold, method = select_threshold(y_val, best.val_probs, cfg.threshold_method)
    summary = {
        k: {"mean": float(table[k].mean()), "sd": float(table[k].std(ddof=0))}
        for k in ("val_roc_auc", "val_balanced_accuracy")
    }
    val = evaluation_metrics(y_val, best.val_probs, threshold)
    metrics = {
        "val": val,
        "checkpoint": {"threshold": threshold, "threshold_method": method, "seed": best.seed},
        "best_epoch": best.best_epoch,
        "selected_by": "val_roc_auc over seeds; epochs by val balanced accuracy",
        "probe": {"seeds": rows, "over_seeds": summary, "head": cfg.head},
        "encoder": {"name": spec.name, "licence": spec.licence, "weights": weights.label},
        "embed_seconds": round(embed_seconds, 2),
        "train_seconds_total": round(float(table["seconds"].sum()), 2),
    }
    bundle = Bundle(
        arch="encoder-probe",
        arch_kwargs={
            "encoder": spec.to_dict(),
            "weights": weights.label,
            "weights_sha256": weights.sha256,
            "head": cfg.head,
            "hidden": MLP_HIDDEN,
        },
        state_dict={f"head.{k}": v.detach().clone() for k, v in best.head.state_dict().items()},
        preprocessing=preprocessing_of(spec, cfg.mpp),
        threshold=threshold,
        config=cfg.to_dict(),
        metrics={"threshold_method": method, "val_roc_auc": val["roc_auc"]},
        synthetic=cfg.data is not None and is_synthetic(cfg.data),
    )
    save_checkpoint(run_dir / FILENAME, bundle)
    atomic_write_json(run_dir / "metrics.json", metrics)
    write_table(table, run_dir / "probe_seeds.csv")
    history = pd.DataFrame([h for p in probes for h in p.history])
    write_table(history, run_dir / "history.csv")
    ids = data.val.ids[data.val_idx]
    write_table(
        predictions_frame(ids, best.val_probs, threshold, y_val), run_dir / "val_predictions.csv"
    )
    return RunResult(run_dir, metrics, best.best_epoch, history, data=data)
