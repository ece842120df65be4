"""Multi-process training through Lightning Fabric's DDP (gloo on CPU), launched by torchrun.

Two processes with half the batch each see exactly the single process's batches when the order
is fixed (DistributedSampler gives rank r the rows r, r + 2, ...), and DDP averages their
gradients, so the weights and the validation predictions must agree to float rounding.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metastasis.config import resolve_config
from metastasis.engine.trainer import fit

COMMON = {
    "model": "baseline-cnn",
    "epochs": 2,
    "augment": "none",
    "shuffle": False,
    "precision": "32-true",
    "threads": 1,
    "lr": 1e-3,
}


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
    reason="torchrun not installed",
)
def test_two_process_ddp_matches_one_process(demo_data: Path, tmp_path: Path) -> None:
    single = fit(
        resolve_config(
            None,
            data=str(demo_data / "train"),
            val_data=str(demo_data / "valid"),
            batch_size=16,
            out=str(tmp_path / "single"),
            **COMMON,
        ),
        progress=False,
    )
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in COMMON.items() if k != "shuffle"]
    config = tmp_path / "ddp.yaml"
    config.write_text("shuffle: false\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "metastasis",
            "train",
            "--config",
            str(config),
            "--data",
            str(demo_data / "train"),
            "--val-data",
            str(demo_data / "valid"),
            "--accelerator=cpu",
            "--devices=2",
            "--batch-size=8",
            "--no-progress",
            "--out",
            str(tmp_path / "ddp"),
            *flags,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp_env = json.loads((tmp_path / "ddp" / "environment.json").read_text())
    assert ddp_env["world_size"] == 2
    a = pd.read_csv(single.run_dir / "val_predictions.csv")
    b = pd.read_csv(tmp_path / "ddp" / "val_predictions.csv")
    assert list(a["id"]) == list(b["id"])
    np.testing.assert_allclose(a["probability"], b["probability"], atol=1e-4)
    ha = pd.read_csv(single.run_dir / "history.csv")
    hb = pd.read_csv(tmp_path / "ddp" / "history.csv")
    np.testing.assert_allclose(ha["val_roc_auc"], hb["val_roc_auc"], atol=1e-4)
    np.testing.assert_allclose(ha["train_loss"], hb["train_loss"], rtol=1e-3)
