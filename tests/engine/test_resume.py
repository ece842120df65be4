"""Crash safety: a killed or interrupted run resumes to the same numbers."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from metastasis.checkpoint import load_checkpoint
from metastasis.config import TrainConfig
from metastasis.data import synthetic
from metastasis.engine.trainer import fit
from metastasis.errors import DataError, MetastasisError


class Crash(Exception):
    pass


def _cfg(data: Path, out: Path, epochs: int = 3) -> TrainConfig:
    return TrainConfig(
        data=str(data / "train"),
        val_data=str(data / "valid"),
        epochs=epochs,
        batch_size=32,
        model_kwargs={"dropout": 0.3},
        out=str(out),
    )


def test_resume_after_a_crash_ends_with_the_same_numbers(demo_data: Path, tmp_path: Path) -> None:
    straight = fit(_cfg(demo_data, tmp_path / "straight"), progress=False)

    def crash_after_two(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise Crash

    with pytest.raises(Crash):
        fit(_cfg(demo_data, tmp_path / "broken"), progress=False, on_epoch_end=crash_after_two)
    assert (tmp_path / "broken" / "last.pt").is_file()
    assert not (tmp_path / "broken" / "metrics.json").exists()
    resumed = fit(_cfg(demo_data, tmp_path / "broken"), progress=False, resume=True)
    pd.testing.assert_frame_equal(
        straight.history.drop(
            columns=["seconds", "train_seconds", "train_patches_per_s", "val_seconds"]
        ),
        resumed.history.drop(
            columns=["seconds", "train_seconds", "train_patches_per_s", "val_seconds"]
        ),
    )
    assert resumed.metrics["val"] == straight.metrics["val"]
    assert resumed.best_epoch == straight.best_epoch
    assert not (tmp_path / "broken" / "last.pt").exists()  # complete: nothing to resume


def test_resume_refusals(demo_data: Path, tmp_path: Path) -> None:
    done = fit(_cfg(demo_data, tmp_path / "done", epochs=1), progress=False)
    with pytest.raises(MetastasisError, match="already complete"):
        fit(_cfg(demo_data, done.run_dir, epochs=1), progress=False, resume=True)
    with pytest.raises(MetastasisError, match="not a run folder"):
        fit(_cfg(demo_data, tmp_path / "empty"), progress=False, resume=True)


def test_resume_refuses_changed_data(tmp_path: Path) -> None:
    data = synthetic.write_demo_dataset(tmp_path / "d", n_train=64, n_valid=32, seed=1)

    def crash(epoch: int, row: dict) -> None:
        raise Crash

    with pytest.raises(Crash):
        fit(_cfg(data, tmp_path / "run", epochs=2), progress=False, on_epoch_end=crash)
    victim = next((data / "train" / "0").iterdir())
    victim.unlink()
    with pytest.raises(DataError, match="data changed since this run started"):
        fit(_cfg(data, tmp_path / "run", epochs=2), progress=False, resume=True)


def _train_cmd(data: Path, out: Path, cache: Path, epochs: int = 2) -> list[str]:
    return [
        sys.executable,
        "-m",
        "metastasis",
        "-q",
        "train",
        "--data",
        str(data / "train"),
        "--val-data",
        str(data / "valid"),
        "--epochs",
        str(epochs),
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--no-progress",
    ]


def _wait_for_epochs(run: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    history = run / "history.csv"
    while time.monotonic() < deadline:
        if history.is_file() and len(pd.read_csv(history)) >= n:
            return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    raise AssertionError(f"no epoch {n} within {timeout} s")


@pytest.fixture(scope="module")
def kill_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough patches that an epoch takes a second or more, so a kill 0.5 s into one lands
    inside it; fewer than the int8 export's calibration needs, so runs skip that step."""
    return synthetic.write_demo_dataset(
        tmp_path_factory.mktemp("kill") / "d", n_train=288, n_valid=64, seed=2
    )


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(
    kill_data: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    subprocess.run(_train_cmd(kill_data, tmp_path / "straight", cache), check=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(kill_data, run, cache), stderr=subprocess.PIPE, text=True)
    _wait_for_epochs(run, 1, proc)
    time.sleep(0.5)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(pd.read_csv(run / "history.csv")) == 1  # killed inside epoch 2
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "metastasis",
            "-q",
            "train",
            "--resume",
            str(run),
            "--cache-dir",
            str(cache),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    assert b["val"] == a["val"] and b["best_epoch"] == a["best_epoch"]
    ha, hb = (pd.read_csv(p / "history.csv") for p in (tmp_path / "straight", run))
    pd.testing.assert_series_equal(ha["val_roc_auc"], hb["val_roc_auc"])
    pd.testing.assert_series_equal(ha["train_loss"], hb["train_loss"])


def test_ctrl_c_leaves_a_usable_checkpoint_and_a_note(kill_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # Many epochs: the signal must land while training, however fast an epoch is. SIGINT is
    # reset to its default in the child: a shell's background job (`make test &`) inherits it
    # ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen(
        _train_cmd(kill_data, run, tmp_path / "cache", epochs=50),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for_epochs(run, 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted" in err
    note = (run / "INTERRUPTED.txt").read_text()
    assert "metastasis train --resume" in note
    assert load_checkpoint(run).metrics["epoch"] >= 1
