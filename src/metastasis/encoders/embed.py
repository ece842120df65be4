"""`metastasis embed`: a data set's embeddings by a foundation encoder, cached once.

``resolve_encoder`` turns the user's ``--encoder``/``--weights`` (and optional timm kwargs and
input size) into a spec and a located, hashed weight file; ``embed_split`` builds (or reuses)
the split's store; ``embed`` is the whole command: open the data (any layout, through the patch
cache), embed it, say where the store is. The command with ``--slides`` is
``encoders.tiles.embed_slides`` (kept there, so that this module, which probe training imports,
never reaches the slides package): one store per slide of its tissue tiles, with the tiles'
coordinates, for multiple-instance learning; ``shard`` takes slides ``I, I+N, ...`` of the
sorted list, as ``metastasis slides`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metastasis.data.cache import CachedSplit, open_split
from metastasis.encoders.backbone import build_encoder
from metastasis.encoders.registry import EncoderSpec, get_encoder_spec
from metastasis.encoders.store import EmbeddingStore, build_store, parse_shard
from metastasis.encoders.weights import Weights, resolve_weights

__all__ = ["EmbedResult", "embed", "embed_split", "resolve_encoder"]


@dataclass(frozen=True)
class EmbedResult:
    split: CachedSplit
    spec: EncoderSpec
    weights: Weights
    store: EmbeddingStore | None  # None: other shards still have chunks to encode
    shard: tuple[int, int]


def resolve_encoder(
    name: str,
    weights: str | Path | None,
    model_kwargs: dict[str, Any] | None = None,
    input_size: int | None = None,
) -> tuple[EncoderSpec, Weights]:
    """The spec of ``name`` with overrides, and its weight file (located, SHA-256 checked)."""
    spec = get_encoder_spec(name).with_overrides(model_kwargs, input_size)
    return spec, resolve_weights(spec, weights)


def embed_split(
    split: CachedSplit,
    spec: EncoderSpec,
    weights: Weights,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = 64,
    shard: tuple[int, int] = (0, 1),
    device: str = "cpu",
    progress: bool = True,
) -> EmbeddingStore | None:
    """The split's store for this encoder (the encoder is built only if rows are missing)."""
    root = Path(cache_dir) / "embeddings" if cache_dir else None
    return build_store(
        split,
        spec,
        weights,
        lambda: build_encoder(spec, weights),
        root,
        batch_size=batch_size,
        shard=shard,
        device=device,
        progress=progress,
    )


def embed(
    data: str | Path,
    encoder: str,
    weights: str | Path | None,
    *,
    split: str | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    shard: str = "0/1",
    model_kwargs: dict[str, Any] | None = None,
    input_size: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> EmbedResult:
    """Embed one split of ``data`` (any layout) with ``encoder``; see the module doc."""
    spec, found = resolve_encoder(encoder, weights, model_kwargs, input_size)
    part = parse_shard(shard)
    cached = open_split(data, split, (), Path(cache_dir) if cache_dir else None, progress)
    store = embed_split(
        cached,
        spec,
        found,
        cache_dir,
        batch_size=batch_size,
        shard=part,
        device=device,
        progress=progress,
    )
    return EmbedResult(cached, spec, found, store, part)
