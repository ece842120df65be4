"""Encode a data set once with a pathology foundation encoder (weights from a local file, no
network) into a memory-mapped embedding store in the cache folder: resumable, and shardable
over machines (--shard I/N, e.g. a SLURM array; the last shard to finish completes the store).
`metastasis train --encoder NAME --weights PATH` then trains a probe on it in seconds.
With --slides (slide files or folders of slides): one store per slide of its tissue tiles,
found as `metastasis slides` finds them, read at --tile-mpp, with a tiles.csv of their
level-0 coordinates (for multiple-instance learning); --shard takes slides I, I+N, ..."""

from __future__ import annotations

import argparse
from typing import Any

from metastasis.cli.common import add_data_options, add_setting_flags, progress, setting_values

ORDER = 25
HELP = "embed a data set with a foundation encoder (cached; for train --encoder)"
FLAGS = ["encoder", "weights", "model_kwargs", "input_size"]
SLIDE_FLAGS = ["mpp", "reader", "tissue_threshold", "min_tissue", "workers", "block_tiles"]
TILE_FLAGS = ["tile_mpp", "tile_size"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from metastasis.config import TrainConfig
    from metastasis.encoders.registry import list_encoders
    from metastasis.encoders.tiles import TileOptions
    from metastasis.inference.options import InferenceOptions
    from metastasis.slides.options import SlideOptions

    p.add_argument(
        "--data",
        help="a folder or file in any supported layout (default: none; needed unless --list)",
    )
    p.add_argument("--split", help="split of --data (default: train, else the only one)")
    add_setting_flags(p, TrainConfig, FLAGS)
    add_setting_flags(p, InferenceOptions, ["batch_size", "device"])
    add_setting_flags(p, SlideOptions, ["shard"])  # as slides: a SLURM array fills one store
    group = p.add_argument_group("slides (--slides: one store of tissue tiles per slide)")
    group.add_argument(
        "--slides", nargs="+", metavar="PATH", help="slide files or folders of slides, "
        "instead of --data (default: none)",
    )  # fmt: skip
    add_setting_flags(group, TileOptions, TILE_FLAGS)
    add_setting_flags(group, SlideOptions, SLIDE_FLAGS)
    p.add_argument(
        "--list", action="store_true", help="list the known encoders: " + ", ".join(list_encoders())
    )
    add_data_options(p)


def run(args: argparse.Namespace) -> int:
    from metastasis.encoders.embed import embed
    from metastasis.encoders.registry import ENCODERS
    from metastasis.errors import MetastasisError
    from metastasis.inference.options import inference_options
    from metastasis.inference.predictor import auto_device
    from metastasis.slides.options import slide_options

    if args.list:
        for name, spec in sorted(ENCODERS.items()):
            print(f"{name:14} {spec.runtime:12} dim {spec.embed_dim:5}  {spec.licence}")
        return 0
    values = setting_values(args, FLAGS)
    run_opts = inference_options(setting_values(args, ["batch_size", "device"]))
    shard = slide_options(setting_values(args, ["shard"])).shard or "0/1"
    if not (args.data or args.slides) or not values["encoder"]:
        raise MetastasisError(
            "embed needs --data (or --slides) and --encoder (--list shows the encoders)"
        )
    if args.data and args.slides:
        raise MetastasisError("embed: give --data or --slides, not both")
    device = str(auto_device(run_opts.device))
    if args.slides:
        return _run_slides(args, values, run_opts.batch_size, shard, device)
    result = embed(
        args.data,
        values["encoder"],
        values["weights"],
        split=args.split,
        cache_dir=args.cache_dir,
        batch_size=run_opts.batch_size,
        shard=shard,
        model_kwargs=values["model_kwargs"],
        input_size=values["input_size"],
        device=device,
        progress=progress(args),
    )
    i, n = result.shard
    if result.store is None:
        print(f"shard {i}/{n} done; the store is complete once every shard has run")
        return 0
    print(f"embeddings: {result.store.path} ({len(result.store):,} x {result.store.dim})")
    print(f"encoder:    {result.spec.name}, weights {result.weights.label}")
    print(f"licence:    {result.spec.licence}")
    return 0


def _run_slides(
    args: argparse.Namespace, values: dict[str, Any], batch_size: int, shard: str, device: str
) -> int:
    from metastasis.encoders.tiles import embed_slides

    result = embed_slides(
        args.slides,
        values["encoder"],
        values["weights"],
        cache_dir=args.cache_dir,
        batch_size=batch_size,
        model_kwargs=values["model_kwargs"],
        input_size=values["input_size"],
        device=device,
        progress=progress(args),
        shard=shard,
        **setting_values(args, TILE_FLAGS),
        **{k: v for k, v in setting_values(args, SLIDE_FLAGS).items() if v is not None},
    )
    i, n = result.shard
    for sid, store in result.stores.items():
        print(f"{sid}: {store.path} ({len(store):,} tiles x {store.dim})")
    for sid, reason in result.failed.items():
        print(f"{sid}: failed: {reason}")
    print(f"shard {i}/{n}: {len(result.stores)} of {result.slides} slides embedded; "
          f"encoder {result.spec.name}, weights {result.weights.label}")  # fmt: skip
    print(f"licence:    {result.spec.licence}")
    return 1 if result.failed else 0
