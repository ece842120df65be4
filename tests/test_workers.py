"""Decoding workers die with the process that started them, even when it is killed (SIGKILL)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from tests.helpers import patches

from metastasis.data.cache import CHUNK


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids |= {int(k) for k in (task / "children").read_text().split()}
    return kids


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may never reap an orphan's corpse)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _processes_of(folder: Path) -> list[int]:
    """Running processes whose command line names ``folder`` (the command and its workers)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if os.fsencode(folder) in cmdline and _running(int(proc.name)):
            found.append(int(proc.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_killed_cache_build_leaves_no_workers(tmp_path: Path) -> None:
    # enough files for the worker pool (4 chunks or more), copies of one PNG: written at once
    buf = io.BytesIO()
    Image.fromarray(patches(1, seed=0)[0][0]).save(buf, format="PNG")
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(6 * CHUNK):
        (folder / f"p{i:05d}.png").write_bytes(buf.getvalue())
    env = {**os.environ, "METASTASIS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "metastasis", "check", str(folder), "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while not workers and proc.poll() is None and time.monotonic() < deadline:
        workers = _children(proc.pid)
        time.sleep(0.005)
    if not workers:
        proc.kill()
        pytest.fail(f"no worker process was seen (exit status {proc.poll()})")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while _processes_of(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _processes_of(folder)  # every worker, also any started after the first was seen
    for w in left:  # never leave them behind ourselves either
        os.kill(w, signal.SIGKILL)
    assert left == [], f"workers {left} outlived their killed parent"
    cache = tmp_path / "cache"
    assert not any(p.name.endswith("meta.json") for p in cache.rglob("*")), "a cache looks done"
