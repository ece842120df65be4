"""`metastasis embed`: a data set's embeddings by a foundation encoder, cached once.

``resolve_encoder`` turns the user's ``--encoder``/``--weights`` (and optional timm kwargs and
input size) into a spec and a located, hashed weight file; ``embed_split`` builds (or reuses)
the split's store; ``embed`` is the whole command: open the data (any layout, through the patch
cache), embed it, say where the store is. ``embed_slides`` is the command with ``--slides``:
one store per slide of its tissue tiles (``encoders.tiles``), with the tiles' coordinates, for
multiple-instance learning; ``shard`` takes slides ``I, I+N, ...`` of the sorted list, as
``metastasis slides`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metastasis.data.cache import CachedSplit, open_split
from metastasis.encoders.backbone import Encoder, build_encoder
from metastasis.encoders.registry import EncoderSpec, get_encoder_spec
from metastasis.encoders.store import EmbeddingStore, build_store, parse_shard
from metastasis.encoders.weights import Weights, resolve_weights
from metastasis.slides.options import SlideOptions

__all__ = ["EmbedResult", "SlideEmbedResult", "embed", "embed_slides", "embed_split",
           "resolve_encoder"]  # fmt: skip


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


@dataclass
class SlideEmbedResult:
    spec: EncoderSpec
    weights: Weights
    shard: tuple[int, int]
    slides: int  # slides of every shard
    stores: dict[str, EmbeddingStore] = field(default_factory=dict)  # this shard's, by slide id
    failed: dict[str, str] = field(default_factory=dict)  # slide id -> one-line reason


def embed_slides(
    paths: Sequence[str | Path] | str | Path,
    encoder: str,
    weights: str | Path | None,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    model_kwargs: dict[str, Any] | None = None,
    input_size: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    tile_mpp: float | None = None,
    tile_size: int | None = None,
    options: SlideOptions | None = None,
    **settings: Any,
) -> SlideEmbedResult:
    """One store per slide of ``paths`` (files, or folders of slides) of its tissue tiles.

    ``tile_mpp``, ``tile_size``: ``TileOptions`` (default 0.5 um/px, the encoder's input
    size); ``options`` or keywords: ``SlideOptions`` (mpp, reader, tissue_threshold,
    min_tissue, workers, block_tiles, shard). A slide that cannot be read is a one-line reason
    in ``failed`` and the others go on."""
    from metastasis.encoders.tiles import SlideTiles, TileOptions
    from metastasis.errors import MetastasisError, OutputError, first_line
    from metastasis.extras import SLIDES, require
    from metastasis.slides.options import slide_options
    from metastasis.slides.run import assign_ids, list_slides

    require("slide embedding", *SLIDES)
    opts = slide_options({**(options.to_dict() if options is not None else {}), **settings})
    tiles = TileOptions.model_validate(
        {k: v for k, v in dict(tile_mpp=tile_mpp, tile_size=tile_size).items() if v is not None}
    )
    spec, found = resolve_encoder(encoder, weights, model_kwargs, input_size)
    everything = assign_ids(list_slides([paths] if isinstance(paths, (str, Path)) else paths))
    if not everything:
        raise MetastasisError("embed --slides: no slides found")
    index, count = opts.shard_index
    result = SlideEmbedResult(spec, found, (index, count), len(everything))
    root = Path(cache_dir) / "embeddings" if cache_dir else None
    built: list[Encoder] = []  # built once, when the first slide needs it

    def once() -> Encoder:
        if not built:
            built.append(build_encoder(spec, found))
        return built[0]

    for sid, p in everything[index::count]:
        rows = SlideTiles(p, sid, opts, tiles.tile_mpp, tiles.tile_size or spec.input_size)
        try:
            store = build_store(
                rows, spec, found, once, root,
                batch_size=batch_size, device=device, progress=progress, prepare=rows.write_table,
            )  # fmt: skip
        except OutputError:
            raise
        except Exception as exc:  # one slide's failure must not stop the others
            result.failed[sid] = first_line(exc, with_type=not isinstance(exc, MetastasisError))
            continue
        assert store is not None  # one process builds every chunk of its slides
        result.stores[sid] = store
    return result
