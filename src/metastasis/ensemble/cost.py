"""Cost per patch: the seconds a model takes per patch, timed as ``predict``'s PyTorch engine
runs it (float32, channels-last, a CPU batch in chunks of ``inference.runtime.CPU_CHUNK``)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from metastasis.inference.runtime import make_engine
from metastasis.transforms.presets import Preprocessing

REPEATS = 3  # timed passes per model; the fastest counts (the others saw a busy machine)


def seconds_per_patch(
    models: Sequence[nn.Module],
    preprocessing: Preprocessing,
    device: torch.device,
    n: int = 256,
    repeats: int = REPEATS,
) -> list[float]:
    """Seconds per patch of each model on ``n`` synthetic patches (after one warm-up pass):
    the fastest of ``repeats`` passes, divided by ``n``."""
    from metastasis.data.synthetic import make_patches

    images, _ = make_patches(n, seed=0)
    x = preprocessing(torch.from_numpy(images).to(device))
    out = []
    for model in models:
        engine = make_engine(model, preprocessing, device, "torch")
        engine(x[: min(n, 32)])  # warm-up: oneDNN's kernels chosen, memory allocated
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            engine(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
        out.append(best / n)
    return out
