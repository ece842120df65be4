"""Shared pieces of the benchmarks: the Keras reference, timed subprocesses, machine facts."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_REFERENCE = HERE.parent.parent / "shared" / "peers" / "seed_keras.py"
METASTASIS = [sys.executable, "-m", "metastasis"]
EPOCH_LINE = re.compile(
    r"epoch (\d+)/(\d+) .*\| val loss \S+ +acc (\S+) +auc (\S+) \| (\S+) patches/s"
)


def add_reference_options(ap: object) -> None:
    ap.add_argument(  # type: ignore[attr-defined]
        "--keras-python",
        default=os.environ.get("KERAS_PYTHON", "python"),
        help="python of a separate venv with tensorflow-cpu and keras ($KERAS_PYTHON)",
    )
    ap.add_argument(  # type: ignore[attr-defined]
        "--reference",
        default=str(DEFAULT_REFERENCE),
        help="the Keras reference script (default ../shared/peers/seed_keras.py)",
    )


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def stream(cmd: list[str]) -> Iterator[tuple[float, str]]:
    """Run ``cmd`` and yield (seconds since start, line) for each line of stdout + stderr,
    echoing each. Closing the generator early kills the process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            t = time.perf_counter() - start
            print(f"  [{t:7.1f}s] {line.rstrip()}", flush=True)
            yield t, line.rstrip("\n")
        proc.wait()
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def reference_cmd(args: Any, data: Path, epochs: int, *extra: str) -> list[str]:
    """``seed_keras.py`` training on DATA/train, scored on DATA/valid after each epoch."""
    return [args.keras_python, args.reference, "--train", str(data / "train"), "--valid",
            str(data / "valid"), "--epochs", str(epochs), "--threads", str(args.threads),
            *extra]  # fmt: skip


def our_train_cmd(data: Path, work: str, threads: int, *extra: str) -> list[str]:
    """``metastasis train`` on DATA/train and DATA/valid with an empty cache in WORK."""
    return [*METASTASIS, "train", "--data", str(data / "train"), "--val-data",
            str(data / "valid"), "--out", f"{work}/run", "--cache-dir", f"{work}/cache",
            "--threads", str(threads), "--no-progress", *extra]  # fmt: skip


def reference_epochs(lines: Iterator[tuple[float, str]]) -> Iterator[tuple[float, dict]]:
    """The reference's per-epoch JSON lines (epoch, train_img_per_s, val_acc, val_auc)."""
    for t, line in lines:
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "val_auc" in row:
                yield t, row


def our_epochs(lines: Iterator[tuple[float, str]]) -> Iterator[tuple[float, dict]]:
    """Our training log's epoch lines as dicts (epoch, val_acc, val_auc, train_img_per_s)."""
    for t, line in lines:
        m = EPOCH_LINE.search(line)
        if m:
            row = {"epoch": int(m.group(1)), "val_acc": float(m.group(3)),
                   "val_auc": float(m.group(4)), "train_img_per_s": float(m.group(5))}  # fmt: skip
            yield t, row


def save(result: dict, path: str | None) -> None:
    text = json.dumps(result, indent=1)
    if path:
        Path(path).write_text(text)
    print(text)


def halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two stratified halves of the rows (sorted index arrays)."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for c in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == c))
        a.append(rows[: len(rows) // 2])
        b.append(rows[len(rows) // 2 :])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))
