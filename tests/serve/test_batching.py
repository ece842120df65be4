"""MicroBatcher: concurrent requests share calls, each gets its own rows, failures reach all."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from metastasis.serve.batching import MicroBatcher


class Recorder:
    """Row i of the answer is the sum of image i; the first call waits until released."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.release = threading.Event()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if not self.sizes:
            self.release.wait(10)
        self.sizes.append(len(images))
        return images.reshape(len(images), -1).sum(1)


def _requests(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (1 + i % 3, 4, 4, 3), dtype=np.uint8) for i in range(n)]


async def _run(batcher: MicroBatcher, fn: Recorder, requests: list[np.ndarray]) -> list[np.ndarray]:
    await batcher.start()
    try:
        tasks = [asyncio.create_task(batcher.submit(requests[0]))]
        await asyncio.sleep(0.05)  # the first request is in its call, which blocks
        tasks += [asyncio.create_task(batcher.submit(r)) for r in requests[1:]]
        await asyncio.sleep(0.05)  # the others queue behind it
        fn.release.set()
        return list(await asyncio.gather(*tasks))
    finally:
        await batcher.stop()


@pytest.mark.parametrize("max_batch", [64, 5, 0])
def test_requests_share_calls_and_get_their_own_rows(max_batch: int) -> None:
    fn = Recorder()
    requests = _requests(10)
    answers = asyncio.run(_run(MicroBatcher(fn, max_batch=max_batch), fn, requests))
    for r, a in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(a, r.reshape(len(r), -1).sum(1))
    assert sum(fn.sizes) == sum(len(r) for r in requests)
    if max_batch == 0:
        assert fn.sizes == [len(r) for r in requests]  # one call per request
    else:
        assert fn.sizes[0] == len(requests[0]) and len(fn.sizes) < len(requests)
        # a call stops taking requests once it holds max_batch patches (requests are whole)
        assert all(s < max_batch + 3 for s in fn.sizes)
    if max_batch == 64:
        assert len(fn.sizes) == 2  # the first request, then all nine that waited


def test_a_failing_call_fails_every_request_in_it() -> None:
    def boom(images: np.ndarray) -> np.ndarray:
        raise RuntimeError("engine failed")

    async def run() -> list[object]:
        b = MicroBatcher(boom, max_batch=64)
        await b.start()
        try:
            tasks = [b.submit(r) for r in _requests(4)]
            return list(await asyncio.gather(*tasks, return_exceptions=True))
        finally:
            await b.stop()

    results = asyncio.run(run())
    assert all(isinstance(r, RuntimeError) and str(r) == "engine failed" for r in results)
