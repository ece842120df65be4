"""A tiny ViT saved to a local safetensors file stands in for a foundation model."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.encoders.tiny_vit import save_tiny_vit


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_vit(tmp_path_factory.mktemp("weights") / "tiny-vit.safetensors", seed=1)
