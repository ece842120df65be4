"""Whole slides: tissue, tile probabilities, heatmaps, tumour regions (GeoJSON), lesion sizes,
node categories and pN stages, for one slide or folders of slides (resumable, shardable).
Research use only: not a diagnosis."""

from __future__ import annotations

import argparse

from metastasis.cli.common import (
    add_inference_flags,
    add_setting_flags,
    inference_values,
    progress,
    setting_values,
)

ORDER = 45
HELP = "whole-slide maps, tumour regions and lesion sizes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from metastasis.slides.options import NAMES, SlideOptions

    p.add_argument("slides", nargs="+", metavar="SLIDE_OR_DIR", help="slide files or folders")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per slide)")
    add_inference_flags(p)
    add_setting_flags(p, SlideOptions, NAMES)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from metastasis.extras import SLIDES, require

    require("whole-slide analysis", *SLIDES)
    from metastasis.slides import run_slides
    from metastasis.slides.options import NAMES, slide_options

    table = run_slides(
        args.slides,
        args.checkpoint,
        args.out,
        slide_options(setting_values(args, NAMES)),
        progress=progress(args),
        **inference_values(args),
    )
    counts = table["status"].value_counts().to_dict()
    done = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"{len(table)} slides ({done}); see {args.out}/slides.csv and report.html")
    return 0 if counts.get("failed", 0) == 0 else 1
