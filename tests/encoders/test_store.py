from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.encoders.tiny_vit import TINY, TINY_KWARGS, save_tiny_vit

from metastasis.data.cache import CachedSplit, open_split
from metastasis.encoders import store as store_module
from metastasis.encoders.backbone import build_encoder
from metastasis.encoders.embed import embed_split, resolve_encoder
from metastasis.encoders.store import build_store, parse_shard
from metastasis.errors import MetastasisError


@pytest.fixture(scope="module")
def split(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> CachedSplit:
    return open_split(demo_data / "valid", cache_root=tmp_path_factory.mktemp("c"), progress=False)


def _never() -> torch.nn.Module:
    raise AssertionError("the encoder was built although the store exists")


def test_the_store_is_reused_and_invalidated_by_weights_and_preprocessing(
    split: CachedSplit, tiny_weights: Path, tmp_path: Path
) -> None:
    spec, weights = resolve_encoder(TINY, tiny_weights, TINY_KWARGS, 32)
    first = embed_split(split, spec, weights, tmp_path, batch_size=32, progress=False)
    assert first is not None and first.embeddings.shape == (len(split), 48)
    assert first.meta["weights_sha256"] == weights.sha256
    again = build_store(split, spec, weights, _never, tmp_path / "embeddings", progress=False)
    assert again is not None and again.path == first.path
    other_file = save_tiny_vit(tmp_path / "other.safetensors", seed=2)
    _, other = resolve_encoder(TINY, other_file, TINY_KWARGS, 32)
    changed = [
        embed_split(split, spec, other, tmp_path, progress=False),
        embed_split(split, replace(spec, mean=(0.4, 0.4, 0.4)), weights, tmp_path, progress=False),
    ]
    assert len({first.path} | {s.path for s in changed if s is not None}) == 3
    assert not np.allclose(changed[0].embeddings, first.embeddings)  # type: ignore[union-attr]


def test_shards_fill_one_store_and_a_rerun_resumes(
    split: CachedSplit, tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, weights = resolve_encoder(TINY, tiny_weights, TINY_KWARGS, 32)
    whole = embed_split(split, spec, weights, tmp_path / "a", progress=False)
    monkeypatch.setattr(store_module, "CHUNK", 16)  # 64 patches: 4 chunks
    root = tmp_path / "b" / "embeddings"
    encoder = lambda: build_encoder(spec, weights)  # noqa: E731
    assert build_store(split, spec, weights, encoder, root, shard=(0, 2), progress=False) is None
    building = next(root.glob(".*.building"))
    assert sorted(p.name for p in building.glob("chunk-*")) == [
        "chunk-000000.npy",
        "chunk-000002.npy",
    ]
    done = build_store(split, spec, weights, encoder, root, shard=(1, 2), progress=False)
    assert done is not None and whole is not None and not building.exists()
    np.testing.assert_allclose(done.embeddings, whole.embeddings, atol=1e-6)
    assert build_store(split, spec, weights, _never, root, shard=(0, 2), progress=False) is not None
    with pytest.raises(MetastasisError, match="--shard: need 0 <= I < N"):
        parse_shard("2/2")
