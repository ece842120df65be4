"""Micro-batching: the patches of concurrent requests share model calls, in one worker thread.

Every model call (predictions and Grad-CAM alike) runs in one worker thread, one at a time: the
engine uses all the CPU threads it is given, and two calls at once would only compete for them.
While a call runs, new requests wait in a queue; the next call takes all of them at once (up to
``max_batch`` patches, a request is never split), after waiting at most ``max_wait_s`` for more
to arrive. ``max_batch=0`` turns cross-request batching off: each request is its own call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
_Item = tuple[np.ndarray, "asyncio.Future[np.ndarray]"]


class MicroBatcher:
    """``await submit(images)`` -> ``fn(images)``, with concurrent submissions batched together.

    ``fn`` maps a uint8 N x H x W x 3 batch to an array with one row per image.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        max_batch: int = 64,
        max_wait_s: float = 0.002,
    ) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metastasis-model")
        self.calls = 0  # model calls made, for /healthz and the load benchmark
        self.images = 0
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        if self.max_batch > 0:
            self._task = asyncio.create_task(self._serve(self._queue))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Any other model work (Grad-CAM), in the model's thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def submit(self, images: np.ndarray) -> np.ndarray:
        if self._task is None:
            return await self.run(self._call, images)
        assert self._queue is not None, "MicroBatcher.start() was not awaited"
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((images, future))
        return await future

    def _call(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.images += len(images)
        return self.fn(images)

    async def _serve(self, queue: asyncio.Queue[_Item]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await queue.get()]
            count = len(items[0][0])
            deadline = loop.time() + self.max_wait_s
            while count < self.max_batch:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                items.append(item)
                count += len(item[0])
            live = [(x, f) for x, f in items if not f.done()]  # a client may have gone
            if not live:
                continue
            try:
                out = await self.run(self._call, np.concatenate([x for x, _ in live]))
            except Exception as exc:  # every waiting request gets the failure
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            start = 0
            for x, f in live:
                if not f.done():
                    f.set_result(out[start : start + len(x)])
                start += len(x)
