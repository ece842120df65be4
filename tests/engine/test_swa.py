"""Stochastic weight averaging end to end: what is averaged, batch norm recomputed through the
preprocessing, the average saved as the checkpoint, resume, and the refused combinations.

One 3-epoch run of the batch-norm CNN on the tiny demo set (SWA over epochs 2-3), and one that
crashes in the SWA phase and resumes.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader

from metastasis.checkpoint import load_checkpoint
from metastasis.config import TrainConfig, build_config
from metastasis.data.dataset import passthrough
from metastasis.engine import learner as engine_learner
from metastasis.engine.swa import SWA, batch_norm_buffers
from metastasis.engine.trainer import RunResult, fit
from metastasis.errors import MetastasisError
from metastasis.inference.batches import predict


class Crash(Exception):
    pass


def _cfg(data: Path, out: Path) -> TrainConfig:
    return TrainConfig(
        data=str(data / "train"),
        val_data=str(data / "valid"),
        model="regularised-cnn",
        input_size=32,  # a ninth of the work; the preprocessing resizes
        epochs=3,
        swa_epochs=2,
        batch_size=32,
        lr=3e-3,
        schedule="cosine",
        seed=0,
        out=str(out),
    )


@pytest.fixture(scope="module")
def snapshots() -> Iterator[list[dict[str, torch.Tensor]]]:
    """The live weights each time ``SWA.update`` adds them to the average."""
    seen: list[dict[str, torch.Tensor]] = []

    class RecordingSWA(SWA):
        def update(self, model: nn.Module) -> None:
            seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            super().update(model)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_learner, "SWA", RecordingSWA)
        yield seen


@pytest.fixture(scope="module")
def swa_run(
    demo_data: Path,
    tmp_path_factory: pytest.TempPathFactory,
    snapshots: list[dict[str, torch.Tensor]],
) -> RunResult:
    out = tmp_path_factory.mktemp("swa") / "run"
    return fit(_cfg(demo_data, out), progress=False)


def test_the_checkpoint_is_the_mean_of_the_averaged_epochs_weights(
    swa_run: RunResult, snapshots: list[dict[str, torch.Tensor]]
) -> None:
    assert len(snapshots) == 2  # the ends of epochs 2 and 3
    saved = load_checkpoint(swa_run.checkpoint).state_dict
    assert not any(k.startswith("module.") or k == "n_averaged" for k in saved)  # the plain model's
    model = load_checkpoint(swa_run.checkpoint).build_model()
    for name, _ in model.named_parameters():
        expected = (snapshots[0][name] + snapshots[1][name]) / 2
        torch.testing.assert_close(saved[name], expected)
        assert not torch.equal(snapshots[0][name], snapshots[1][name])  # a real average


def test_batch_norm_is_recomputed_on_the_preprocessed_training_patches(
    swa_run: RunResult, snapshots: list[dict[str, torch.Tensor]]
) -> None:
    bundle = load_checkpoint(swa_run.checkpoint)
    model = bundle.build_model()
    assert batch_norm_buffers(model)  # the family has batch norm
    saved = [b.clone() for b in batch_norm_buffers(model)]
    # By hand: the training rows in order, in training batches, through the preprocessing.
    assert swa_run.data is not None
    images = swa_run.data.train.images[swa_run.data.train_idx]
    batches = [
        bundle.preprocessing(torch.from_numpy(np.ascontiguousarray(images[i : i + 32])))
        for i in range(0, len(images), 32)
    ]
    update_bn(batches, model)
    for ours, by_hand in zip(saved, batch_norm_buffers(model), strict=True):
        torch.testing.assert_close(ours, by_hand, rtol=1e-4, atol=1e-5)
    live = load_checkpoint(swa_run.checkpoint).build_model()
    live.load_state_dict(snapshots[-1])  # the last epoch's live statistics differ
    assert not torch.allclose(saved[0], batch_norm_buffers(live)[0])


def test_the_average_is_validated_reported_and_predicts(swa_run: RunResult) -> None:
    metrics = json.loads((swa_run.run_dir / "metrics.json").read_text())
    swa = metrics["swa"]
    history = pd.read_csv(swa_run.run_dir / "history.csv")
    assert metrics["selected_by"] == "swa" and swa["epochs"] == [2, 3] and swa["n_averaged"] == 2
    assert swa["val_roc_auc"] == pytest.approx(metrics["val"]["roc_auc"])
    assert swa["last_epoch_val_roc_auc"] == pytest.approx(history["val_roc_auc"].iloc[-1])
    assert swa["batch_norm_patches"] == 160 and swa["batch_norm_seconds"] >= 0
    assert metrics["best_epoch"] == swa_run.best_epoch == 3
    # SWALR holds the cosine schedule's rate where averaging starts: constant, below epoch 1's
    assert history["lr"].iloc[1] == pytest.approx(history["lr"].iloc[2])
    assert history["lr"].iloc[1] < history["lr"].iloc[0] and swa["lr"] == history["lr"].iloc[2]
    assert not (swa_run.run_dir / "last.pt").exists()
    bundle = load_checkpoint(swa_run.checkpoint)
    assert bundle.metrics["swa_epochs"] == [2, 3]
    # The saved model is the validated one: it predicts the run's validation probabilities.
    assert swa_run.data is not None
    loader = DataLoader(swa_run.data.val_dataset(), batch_size=64, collate_fn=passthrough)
    out = predict(bundle.build_model(), loader, bundle.preprocessing)
    val = pd.read_csv(swa_run.run_dir / "val_predictions.csv")
    np.testing.assert_allclose(out.probs, val["probability"].to_numpy(), atol=1e-5)


def test_a_run_crashed_during_swa_resumes_to_the_same_average(
    swa_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    def crash_after_two(epoch: int, row: dict[str, Any]) -> None:
        if epoch == 2:
            raise Crash

    cfg = _cfg(demo_data, tmp_path / "broken")
    with pytest.raises(Crash):
        fit(cfg, progress=False, on_epoch_end=crash_after_two)
    resumed = fit(cfg, progress=False, resume=True)
    straight = load_checkpoint(swa_run.checkpoint).state_dict
    for name, value in load_checkpoint(resumed.checkpoint).state_dict.items():
        torch.testing.assert_close(value, straight[name], msg=name)
    assert resumed.metrics["swa"]["n_averaged"] == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 3, "swa_epochs": 3}, "swa_epochs must be below epochs"),
        ({"epochs": 3, "swa_epochs": 1, "ema_decay": 0.9}, "ema_decay"),
        ({"epochs": 3, "swa_epochs": 1, "early_stopping": 2}, "early_stopping"),
        ({"epochs": 3, "swa_epochs": 2, "warmup_epochs": 1.5}, "warmup_epochs"),
        ({"epochs": 3, "swa_epochs": 1, "swa_anneal_epochs": 2}, "swa_anneal_epochs"),
        ({"swa_lr": 0}, "swa_lr must be > 0"),
        ({"epochs": 3, "swa_epochs": 1, "encoder": "timm:resnet18"}, "probe"),
    ],
)
def test_refused_combinations_are_one_line(values: dict[str, Any], message: str) -> None:
    with pytest.raises(MetastasisError, match=message) as err:
        build_config(values, source="recipe.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("recipe.yaml: ")


def test_swalr_anneals_to_swa_lr_over_the_anneal_steps() -> None:
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    swa = SWA(model, epochs=2, total=4, lr=0.02, anneal_epochs=1.0)
    assert [swa.averages(e) for e in (1, 2, 3, 4)] == [False, False, True, True]
    scheduler = swa.scheduler(optimizer, steps_per_epoch=4)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(6):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.1)  # the first step at the schedule's rate
    assert lrs[2] == pytest.approx(0.06)  # half way: cosine
    assert lrs[4:] == pytest.approx([0.02, 0.02, 0.02])
