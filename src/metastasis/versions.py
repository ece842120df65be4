"""The versions of the packages a result depends on: recorded in every checkpoint and run folder.

A room of its own so that the checkpoint (read by inference, slides, serve and export) and the
training environment (``engine.environment``) both record them without importing each other.
"""

from __future__ import annotations

import sys
from importlib import metadata

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
