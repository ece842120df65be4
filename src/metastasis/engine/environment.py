"""What a run ran on: package versions, device, threads; written into every run folder."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from metastasis.versions import package_versions


def loader_workers(device: torch.device | str, requested: int | None = None) -> int:
    """DataLoader worker processes for training on ``device`` (``requested`` wins if given).

    Batches are sliced from a memory-mapped uint8 cache in one read each and augmented as whole
    batches on the model's device, so there is no per-patch decoding to hide. On a CPU, workers
    would only take cores from the model: 0. On a GPU the main process has the GPU to feed, and
    gathering + pinning a batch in a worker overlaps it with the step: up to 4, leaving the
    main process a core.
    """
    if requested is not None:
        if requested < 0:
            raise ValueError(f"num_workers must be >= 0, got {requested}")
        return requested
    if torch.device(device).type == "cpu":
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def eval_batch_size(device: torch.device | str, requested: int | None = None) -> int:
    """Patches per validation batch on ``device`` (``requested`` wins if given).

    On a CPU, 32: oneDNN's activations then stay in the caches, and validating is about twice
    as fast as at 256 (the seed's CNN in bf16: 1,862 against 960 patches/s on the 2-core CPU;
    `inference.runtime` runs its PyTorch engines the same way). On a GPU, 256: small batches
    would leave it waiting on kernel launches.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {requested}")
        return requested
    return 32 if torch.device(device).type == "cpu" else 256


def environment(
    device: torch.device | str, num_workers: int, eval_batch: int | None = None
) -> dict[str, Any]:
    dev = torch.device(device)
    info: dict[str, Any] = {
        "versions": package_versions(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "loader_workers": num_workers,
        "loader_workers_rule": "0 on a CPU; min(4, cores - 1) on a GPU; --num-workers sets it",
        "device": str(dev),
    }
    if eval_batch is not None:
        info["eval_batch_size"] = eval_batch
    if dev.type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(dev)
        info["cuda_version"] = torch.version.cuda
    return info
