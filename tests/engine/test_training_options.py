"""The training options: loss, class balance, schedule, EMA, early stopping, threshold,
calibration and test-time augmentation, end to end through ``train``.

Two training runs in all (both on the tiny demo set): one with every option switched on, one
that cannot learn (lr 0) to check early stopping and the class-balanced, smoothed loss exactly.
"""

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metastasis.checkpoint import load_checkpoint
from metastasis.config import TrainConfig, resolve_config
from metastasis.data.cache import open_split
from metastasis.engine import data as engine_data
from metastasis.engine import learner as engine_learner
from metastasis.engine.ema import EMA
from metastasis.engine.loop import bce_loss
from metastasis.engine.trainer import RunResult, fit
from metastasis.errors import DataError, MetastasisError
from metastasis.inference.evaluate import evaluate_checkpoint
from metastasis.inference.predictor import Predictor
from metastasis.metrics.calibration import fit_temperature, logits_from_probs
from metastasis.metrics.thresholds import youden_threshold
from metastasis.training import train

# --- bce_loss ---------------------------------------------------------------------------------

LOGITS = torch.tensor([2.0, -1.0, 0.5])
TARGETS = torch.tensor([1, 0, 1])


def _log_sigmoid(z: float) -> float:
    return -math.log1p(math.exp(-z))


def test_bce_loss_plain_matches_a_hand_computed_value() -> None:
    # -mean(log s(2), log(1 - s(-1)) = log s(1), log s(0.5))
    expected = -(_log_sigmoid(2.0) + _log_sigmoid(1.0) + _log_sigmoid(0.5)) / 3
    assert float(bce_loss()(LOGITS, TARGETS)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.3048, abs=1e-4)


def test_label_smoothing_moves_targets_to_005_and_095() -> None:
    got = bce_loss(label_smoothing=0.1)(LOGITS, TARGETS)
    ref = F.binary_cross_entropy_with_logits(LOGITS, torch.tensor([0.95, 0.05, 0.95]))
    torch.testing.assert_close(got, ref)
    # By hand: -mean(t log s(z) + (1 - t) log s(-z)).
    t, z = [0.95, 0.05, 0.95], [2.0, -1.0, 0.5]
    by_hand = -sum(
        ti * _log_sigmoid(zi) + (1 - ti) * _log_sigmoid(-zi) for ti, zi in zip(t, z, strict=True)
    )
    assert float(got) == pytest.approx(by_hand / 3, rel=1e-6)
    assert float(got) > float(bce_loss()(LOGITS, TARGETS))  # smoothing costs confident fits


def test_pos_weight_multiplies_the_positive_terms() -> None:
    got = bce_loss(pos_weight=1.5)(LOGITS, TARGETS)
    ref = F.binary_cross_entropy_with_logits(LOGITS, TARGETS.float(), pos_weight=torch.tensor(1.5))
    torch.testing.assert_close(got, ref)
    by_hand = -(1.5 * _log_sigmoid(2.0) + _log_sigmoid(1.0) + 1.5 * _log_sigmoid(0.5)) / 3
    assert float(got) == pytest.approx(by_hand, rel=1e-6)
    both = bce_loss(label_smoothing=0.1, pos_weight=1.5)(LOGITS, TARGETS)
    ref = F.binary_cross_entropy_with_logits(
        LOGITS, torch.tensor([0.95, 0.05, 0.95]), pos_weight=torch.tensor(1.5)
    )
    torch.testing.assert_close(both, ref)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0])
def test_bce_loss_refuses_smoothing_outside_0_1(smoothing: float) -> None:
    with pytest.raises(ValueError, match="label smoothing"):
        bce_loss(label_smoothing=smoothing)


# --- fit with every option --------------------------------------------------------------------


class Recorder:
    """What ``fit`` handed to the loss, the sampler, the scheduler and the EMA."""

    def __init__(self) -> None:
        self.loss_args: list[tuple[float, float | None]] = []
        self.sampler_weights: list[list[float]] = []
        self.schedulers: list[Any] = []
        self.lrs: list[float] = []  # the learning rate of each optimiser step
        self.emas: list[tuple[EMA, nn.Module]] = []
        self.per_epoch: dict[int, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    real_loss, real_sampler, real_build = (
        engine_data.bce_loss,
        engine_data.WeightedRandomSampler,
        engine_learner.build_scheduler,
    )

    def loss(label_smoothing: float = 0.0, pos_weight: float | None = None) -> Any:
        rec.loss_args.append((label_smoothing, pos_weight))
        return real_loss(label_smoothing, pos_weight)

    class Sampler(real_sampler):  # type: ignore[misc,valid-type]
        def __init__(self, weights: list[float], *args: Any, **kwargs: Any) -> None:
            rec.sampler_weights.append(list(weights))
            super().__init__(weights, *args, **kwargs)

    def build(name: str, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        sched = real_build(name, optimizer, *args, **kwargs)
        rec.schedulers.append(sched)
        optimizer.register_step_pre_hook(lambda opt, *_: rec.lrs.append(opt.param_groups[0]["lr"]))
        return sched

    class RecordingEMA(EMA):
        def __init__(self, model: nn.Module, decay: float) -> None:
            super().__init__(model, decay)
            rec.emas.append((self, model))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_data, "bce_loss", loss)
        mp.setattr(engine_data, "WeightedRandomSampler", Sampler)
        mp.setattr(engine_learner, "build_scheduler", build)
        mp.setattr(engine_learner, "EMA", RecordingEMA)
        yield rec


@pytest.fixture(scope="module")
def full_run(
    demo_data: Path, tmp_path_factory: pytest.TempPathFactory, recorder: Recorder
) -> RunResult:
    base = tmp_path_factory.mktemp("options")
    cfg = TrainConfig(
        data=str(demo_data / "train"),
        val_data=str(demo_data / "valid"),
        model="regularised-cnn",
        epochs=2,
        batch_size=16,
        lr=3e-3,
        optimizer="adamw",
        weight_decay=1e-4,
        schedule="onecycle",
        label_smoothing=0.1,
        class_balance="sampler",
        ema_decay=0.9,
        augment="pathology",
        threshold_method="youden",
        calibrate=True,
        tta="d4",
        seed=0,
        out=str(base / "run"),
        cache_dir=str(base / "cache"),
    )

    def on_epoch_end(epoch: int, row: dict[str, Any]) -> None:
        ema, live = recorder.emas[-1]
        recorder.per_epoch[epoch] = {
            "checkpoint": load_checkpoint(base / "run").state_dict,
            "ema": ema.state_dict(),
            "live": {k: v.detach().clone() for k, v in live.state_dict().items()},
        }

    return train(cfg, progress=False, on_epoch_end=on_epoch_end)


def test_full_run_writes_previews_and_calibration_plots(full_run: RunResult) -> None:
    names = {p.name for p in full_run.run_dir.iterdir()}
    assert {"augmentations.png", "reliability.png", "checkpoint.pt", "metrics.json"} <= names
    for name in ("augmentations.png", "reliability.png"):
        assert (full_run.run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((full_run.run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["stopped_early"] is False
    assert len(pd.read_csv(full_run.run_dir / "history.csv")) == 2
    saved = resolve_config(full_run.run_dir / "config.yaml")
    assert (saved.schedule, saved.class_balance, saved.tta, saved.ema_decay) == (
        "onecycle",
        "sampler",
        "d4",
        0.9,
    )


def test_full_run_balances_the_sampler_and_smooths_the_labels(
    full_run: RunResult, recorder: Recorder
) -> None:
    assert recorder.loss_args == [(0.1, None)]  # sampler balance: no positive weight
    splits = pd.read_csv(full_run.run_dir / "splits.csv")
    train_labels = splits.loc[splits["split"] == "train", "truth"].to_numpy()
    assert recorder.sampler_weights and len(recorder.sampler_weights[0]) == len(train_labels)
    w = np.asarray(recorder.sampler_weights[0])
    assert 0 < (train_labels == 1).sum() < (train_labels == 0).sum()  # the demo is imbalanced
    # Each class has the same total weight: drawn equally often.
    assert w[train_labels == 1].sum() == pytest.approx(w[train_labels == 0].sum())


def test_full_run_steps_onecycle_every_batch(full_run: RunResult, recorder: Recorder) -> None:
    (sched,) = recorder.schedulers
    assert type(sched).__name__ == "OneCycleLR"
    steps = math.ceil(160 / 16) * 2
    assert sched.last_epoch == steps == len(recorder.lrs)  # stepped once per batch
    lrs = recorder.lrs
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(3e-3) and peak == round(0.3 * steps) - 1  # no warm-up: 30%
    assert lrs[0] == pytest.approx(3e-3 / 25)
    assert lrs[-1] == pytest.approx(3e-3 / 25 / 1e4)  # the last batch: annealed to ~0
    # history.csv's lr: the rate of each epoch's last step
    history = pd.read_csv(full_run.run_dir / "history.csv")
    assert list(history["lr"]) == pytest.approx([lrs[steps // 2 - 1], lrs[-1]], rel=1e-6)


def test_full_run_checkpoints_the_ema_weights(full_run: RunResult, recorder: Recorder) -> None:
    best = full_run.best_epoch
    seen = recorder.per_epoch[best]
    assert set(seen["checkpoint"]) == set(seen["ema"])
    for k, v in seen["ema"].items():
        torch.testing.assert_close(seen["checkpoint"][k], v)
    # ... and not the live ones (a few parameters at least must differ after 20 steps).
    differs = [
        k
        for k, v in seen["live"].items()
        if v.is_floating_point() and not torch.allclose(v.cpu(), seen["checkpoint"][k])
    ]
    assert differs
    final = load_checkpoint(full_run.checkpoint).state_dict
    for k, v in seen["ema"].items():
        torch.testing.assert_close(final[k], v)


def test_full_run_threshold_is_youden_on_the_saved_validation_probabilities(
    full_run: RunResult,
) -> None:
    metrics = json.loads((full_run.run_dir / "metrics.json").read_text())
    chosen = metrics["checkpoint"]
    assert chosen["threshold_method"] == "youden"
    assert 0.0 < chosen["threshold"] < 1.0
    preds = pd.read_csv(full_run.run_dir / "val_predictions.csv")
    assert len(preds) == 64
    expected = youden_threshold(preds["truth"], preds["probability"])
    assert chosen["threshold"] == pytest.approx(expected, abs=1e-6)  # the CSV keeps 6 decimals
    assert metrics["val"]["threshold"] == pytest.approx(chosen["threshold"])
    bundle = load_checkpoint(full_run.checkpoint)
    assert bundle.threshold == chosen["threshold"]
    assert bundle.metrics["threshold_method"] == "youden"
    # how the threshold holds on validation folds it was not chosen on, recorded beside it
    transfer = chosen["threshold_transfer"]
    assert transfer == bundle.metrics["threshold_transfer"]
    assert transfer["threshold"] == pytest.approx(chosen["threshold"])
    assert len(transfer["fold_thresholds"]) == 5
    assert 0.0 <= transfer["cross_fitted_sensitivity"] <= 1.0


def test_full_run_checkpoint_carries_tta_and_the_fitted_temperature(
    full_run: RunResult, demo_data: Path
) -> None:
    metrics = json.loads((full_run.run_dir / "metrics.json").read_text())
    bundle = load_checkpoint(full_run.checkpoint)
    assert bundle.tta == "d4" == metrics["checkpoint"]["tta"]
    assert bundle.temperature == metrics["checkpoint"]["temperature"]
    assert bundle.temperature != 1.0 and bundle.temperature > 0
    # The temperature is the one fitted to the validation logits *with* TTA.
    predictor = Predictor.from_checkpoint(full_run.checkpoint, device="cpu", batch_size=64)
    predictor.temperature = 1.0
    data = open_split(demo_data / "valid", progress=False)
    probs, labels = predictor.predict_split(data, data.usable_indices(), progress=False)
    refit = fit_temperature(logits_from_probs(probs), labels)
    assert refit == pytest.approx(bundle.temperature, rel=1e-3)


def test_evaluate_reproduces_the_runs_validation_metrics(
    full_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    metrics = json.loads((full_run.run_dir / "metrics.json").read_text())
    bundle = load_checkpoint(full_run.checkpoint)
    m = evaluate_checkpoint(
        full_run.checkpoint, demo_data, tmp_path / "eval", split="valid", progress=False
    )
    assert m["tta"] == "d4" and m["temperature"] == bundle.temperature
    assert m["threshold"] == bundle.threshold
    assert m["roc_auc"] == pytest.approx(metrics["val"]["roc_auc"], abs=1e-6)
    assert m["pr_auc"] == pytest.approx(metrics["val"]["pr_auc"], abs=1e-6)
    # The operating point too (at most the patch sitting on the threshold may move: float32).
    moved = np.abs(np.subtract(m["confusion_matrix"], metrics["val"]["confusion_matrix"])).sum()
    assert moved <= 2
    # The probabilities themselves agree with the run's (TTA + temperature applied by default).
    ours = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    run = pd.read_csv(full_run.run_dir / "val_predictions.csv")
    np.testing.assert_allclose(ours["probability"], run["probability"], atol=2e-6)
    # One vocabulary: the two files have the same columns and ids, so they join on id.
    assert list(ours.columns) == list(run.columns) == ["id", "probability", "prediction", "truth"]
    assert ours["id"].tolist() == run["id"].tolist()


def test_evaluate_tta_override_changes_the_output(
    full_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    m = evaluate_checkpoint(
        full_run.checkpoint, demo_data, tmp_path, split="valid", progress=False, tta="none"
    )
    assert m["tta"] == "none"
    with_tta = pd.read_csv(full_run.run_dir / "val_predictions.csv")["probability"]
    without = pd.read_csv(tmp_path / "predictions.csv")["probability"]
    assert np.abs(with_tta.to_numpy() - without.to_numpy()).max() > 1e-4


# --- early stopping, with a loss that can be checked exactly ------------------------------------


def test_early_stopping_stops_when_nothing_improves(demo_data: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        data=str(demo_data / "train"),
        val_data=str(demo_data / "valid"),
        model="baseline-cnn",  # no batch norm: with lr 0 nothing at all changes
        model_kwargs={"dense": 16},
        epochs=5,
        batch_size=16,
        optimizer="sgd",
        lr=0.0,
        early_stopping=1,
        augment="none",
        label_smoothing=0.1,
        class_balance="loss",
        seed=0,
        out=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
    )
    result = fit(cfg, progress=False)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    history = pd.read_csv(result.run_dir / "history.csv")
    assert len(history) == 2 and list(history["epoch"]) == [1, 2]
    assert metrics["stopped_early"] is True and metrics["epochs"] == 2
    assert metrics["best_epoch"] == 1 == result.best_epoch
    assert history["val_roc_auc"].iloc[0] == history["val_roc_auc"].iloc[1]
    assert not (result.run_dir / "train_state.pt").exists()

    # The training loss is the smoothed, positive-weighted BCE of the (unchanging) model.
    data = open_split(demo_data / "train", progress=False)
    idx = data.usable_indices()
    labels = torch.from_numpy(np.asarray(data.labels[idx])).double()
    pos_weight = float((labels == 0).sum() / (labels == 1).sum())
    assert pos_weight > 1.2  # the demo has fewer tumour patches
    bundle = load_checkpoint(result.checkpoint)
    model = bundle.build_model()
    with torch.no_grad():
        z = model(bundle.preprocessing(torch.from_numpy(np.asarray(data.images[idx])))).double()
    t = labels * 0.9 + 0.05
    per_patch = -(pos_weight * t * F.logsigmoid(z) + (1 - t) * F.logsigmoid(-z))
    for epoch_loss in history["train_loss"]:
        assert epoch_loss == pytest.approx(float(per_patch.mean()), rel=1e-5)
    unweighted = F.binary_cross_entropy_with_logits(z, t)
    assert abs(float(unweighted) - float(per_patch.mean())) > 1e-3  # the weight matters


# --- options checked before any data is read ----------------------------------------------------


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"schedule": "linear"}, "unknown schedule 'linear'"),
        ({"class_balance": "oversample"}, "unknown class_balance 'oversample'"),
        ({"tta": "d8"}, "unknown tta 'd8'"),
        ({"threshold_method": "sensitivity:2"}, "sensitivity:2"),
        ({"threshold_method": "median"}, "unknown threshold method"),
        ({"warmup_epochs": 3.0}, "warmup_epochs"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"early_stopping": -1}, "early_stopping"),
        ({"augment": "wild"}, "unknown augmentation preset"),
        ({"augment_kwargs": {"no_such_knob": 0.1}}, "no_such_knob"),
        ({"optimizer": "adagrad"}, "optimizer"),
        ({"model": "no-such-model"}, "no-such-model"),
    ],
)
def test_bad_options_are_refused_before_the_data_is_read(
    tmp_path: Path, option: dict[str, Any], match: str
) -> None:
    # Most are refused by the config itself (metastasis.config), the rest by fit.
    with pytest.raises(MetastasisError, match=match) as info:
        cfg = TrainConfig(
            data=str(tmp_path / "no-such-data"), epochs=3, out=str(tmp_path / "run"), **option
        )
        fit(cfg, progress=False)
    assert not isinstance(info.value, DataError)
    assert "no-such-data" not in str(info.value)
    assert not (tmp_path / "run").exists()  # nothing was written either
