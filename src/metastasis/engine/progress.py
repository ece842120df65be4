"""Training progress as log lines: how far an epoch is and how fast it runs, every tenth of it.

A progress bar is for a terminal; a job on a cluster, or a benchmark, needs lines in a log. With
the bar off (``--no-progress``) the trainer logs one line per tenth of each epoch, such as
``epoch 1/5: 138/1376 batches (10%), 412 patches/s``, the speed since the line before: so a
long epoch shows that it moves and whether its speed holds.
"""

from __future__ import annotations

import logging
import math
import time

log = logging.getLogger("metastasis.engine.trainer")  # the lines are the trainer's


class ThroughputLog:
    """Call ``start`` at each epoch and ``step`` after each optimiser step."""

    def __init__(
        self,
        steps: int,
        batch_size: int,
        patches: int | None = None,
        parts: int = 10,
        enabled: bool = True,
    ) -> None:
        """``patches``: per epoch, when the last batch is short (default: steps x batch_size)."""
        if steps < 1 or batch_size < 1 or parts < 1:
            raise ValueError("steps, batch_size and parts must be at least 1")
        self.steps, self.batch_size, self.enabled = steps, batch_size, enabled
        self.patches = patches if patches is not None else steps * batch_size
        self.marks = {math.ceil(steps * k / parts) for k in range(1, parts + 1)}
        self.start("")

    def start(self, label: str) -> None:
        self.label, self.done = label, 0
        self.rates: list[float] = []  # patches/s of each part of the current epoch
        self._last = (0, time.perf_counter())

    def step(self) -> None:
        self.done += 1
        if self.done not in self.marks:
            return
        now = time.perf_counter()
        done_before, then = self._last
        seconds = now - then
        patches = self._patches(self.done) - self._patches(done_before)
        rate = patches / seconds if seconds > 0 else math.inf
        self.rates.append(rate)
        self._last = (self.done, now)
        if self.enabled:
            log.info(
                "%s: %d/%d batches (%d%%), %.0f patches/s",
                self.label,
                self.done,
                self.steps,
                round(100 * self.done / self.steps),
                rate,
            )

    def _patches(self, steps: int) -> int:
        return min(steps * self.batch_size, self.patches)  # the last batch may be short
