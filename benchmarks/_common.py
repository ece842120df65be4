"""Shared pieces of the benchmarks: the Keras reference, timed subprocesses, machine facts."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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


def stream(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[tuple[float, str]]:
    """Run ``cmd`` and yield (seconds since start, line) for each line of stdout + stderr.
    Closing the generator early kills the process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            yield time.perf_counter() - start, line.rstrip("\n")
        proc.wait()
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def json_lines(
    lines: Iterator[tuple[float, str]], echo: bool = True
) -> Iterator[tuple[float, dict]]:
    for t, line in lines:
        if echo:
            print(f"  [{t:7.1f}s] {line}", flush=True)
        if line.startswith("{"):
            try:
                yield t, json.loads(line)
            except json.JSONDecodeError:
                continue


def our_epochs(
    lines: Iterator[tuple[float, str]], echo: bool = True
) -> Iterator[tuple[float, dict]]:
    """Our training log's epoch lines as dicts (epoch, val_acc, val_auc, patches_per_s)."""
    for t, line in lines:
        if echo:
            print(f"  [{t:7.1f}s] {line}", flush=True)
        m = EPOCH_LINE.search(line)
        if m:
            yield (
                t,
                {
                    "epoch": int(m.group(1)),
                    "val_acc": float(m.group(3)),
                    "val_auc": float(m.group(4)),
                    "train_img_per_s": float(m.group(5)),
                },
            )


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def save(result: dict, path: str | None) -> None:
    text = json.dumps(result, indent=1)
    if path:
        Path(path).write_text(text)
    print(text)
