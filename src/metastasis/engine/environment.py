"""What a run ran on: package versions, device, threads; written into every run folder."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

import torch

PACKAGES = (
    "metastasis",
    "torch",
    "torchvision",
    "lightning",
    "timm",
    "numpy",
    "pandas",
    "scikit-learn",
    "Pillow",
    "h5py",
)


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def environment(device: torch.device | str, num_workers: int) -> dict[str, Any]:
    dev = torch.device(device)
    info: dict[str, Any] = {
        "versions": package_versions(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "loader_workers": num_workers,
        "device": str(dev),
    }
    if dev.type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(dev)
        info["cuda_version"] = torch.version.cuda
    return info
