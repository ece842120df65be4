"""Worker processes that never outlive the process that started them.

A decoding worker (or a tuning worker) whose parent was killed with SIGKILL would otherwise run
on, holding memory, files and cores. `die_with_parent` is a worker's initializer: on Linux the
kernel sends the worker SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere,
and as a second line, `parent_alive` lets a worker's loop notice that it was orphaned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_parent: int | None = None


def die_with_parent(parent_pid: int) -> None:
    """Run first in a worker: die as soon as ``parent_pid`` does (already gone: die now)."""
    global _parent
    _parent = parent_pid
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: parent_alive() still works
            pass
    if not parent_alive():  # the parent died before the signal was asked for
        os._exit(1)


def parent_alive() -> bool:
    """False once the parent given to `die_with_parent` is gone (the worker was re-parented)."""
    return _parent is None or os.getppid() == _parent
