"""Whole slides: tissue, tile probabilities, heatmaps, tumour regions (GeoJSON), lesion sizes,
node categories and pN stages, for one slide or folders of slides (resumable, shardable).
Research use only: not a diagnosis."""

from __future__ import annotations

import argparse

from metastasis.cli.common import progress
from metastasis.cli.evaluate import ENGINES

ORDER = 45
HELP = "whole-slide maps, tumour regions and lesion sizes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from metastasis.config import TTA_MODES

    p.add_argument("slides", nargs="+", metavar="SLIDE_OR_DIR", help="slide files or folders")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per slide)")
    p.add_argument(
        "--stride",
        type=int,
        default=96,
        help="model pixels between tiles (default 96; 32: a dense map)",
    )
    p.add_argument(
        "--mpp",
        type=float,
        help="microns per pixel of level 0 (default: the file's; needed if it has none)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="auto (default): ONNX Runtime on a CPU, PyTorch on a GPU",
    )
    p.add_argument(
        "--tta", choices=TTA_MODES, help="test-time augmentation (default: checkpoint's)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--batch-size", type=int, default=256, help="tiles per batch (per-tile mode)")
    p.add_argument(
        "--tissue-threshold",
        type=float,
        help="saturation (0-1) above which a pixel is tissue (default: where the glass ends)",
    )
    p.add_argument(
        "--min-tissue",
        type=float,
        default=0.25,
        help="classify tiles with at least this share of tissue (default 0.25)",
    )
    p.add_argument(
        "--itc-mm", type=float, default=0.2, help="largest ITC diameter, mm (default 0.2)"
    )
    p.add_argument(
        "--micro-mm",
        type=float,
        default=2.0,
        help="largest micro-metastasis diameter, mm (default 2.0)",
    )
    p.add_argument(
        "--geojson-tiles",
        action="store_true",
        help="also one GeoJSON feature per tile with its probability",
    )
    p.add_argument(
        "--patients",
        help="CSV with columns slide,patient: pN stage per patient (default: none, no "
        "patient stages)",
    )
    p.add_argument(
        "--shard",
        help="I/N: process slides I, I+N, ... of the sorted list (I from 0; default: every slide)",
    )
    p.add_argument("--reader", choices=["auto", "openslide", "tifffile", "image"], default="auto")
    p.add_argument(
        "--fully-conv",
        choices=["auto", "on", "off"],
        default="auto",
        help="fully convolutional pass where the model allows it (default auto)",
    )
    p.add_argument("--workers", type=int, help="reading threads (default 1 on a CPU, 4 on a GPU)")
    p.add_argument("--no-resume", action="store_true", help="redo slides already done")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from metastasis.extras import SLIDES, require

    require("whole-slide analysis", *SLIDES)
    from metastasis.slides import run_slides

    table = run_slides(
        args.slides,
        args.checkpoint,
        args.out,
        stride=args.stride,
        mpp=args.mpp,
        engine=args.engine,
        tta=args.tta,
        tissue_threshold=args.tissue_threshold,
        geojson_tiles=args.geojson_tiles,
        shard=args.shard,
        patients=args.patients,
        reader=args.reader,
        device=args.device,
        batch_size=args.batch_size,
        min_tissue=args.min_tissue,
        itc_mm=args.itc_mm,
        micro_mm=args.micro_mm,
        fully_conv=args.fully_conv,
        workers=args.workers,
        resume=not args.no_resume,
        progress=progress(args),
    )
    counts = table["status"].value_counts().to_dict()
    done = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"{len(table)} slides ({done}); see {args.out}/slides.csv and report.html")
    return 0 if counts.get("failed", 0) == 0 else 1
