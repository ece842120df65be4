"""A slides output folder in the browser: each slide zoomable (Deep Zoom tiles in OpenSeadragon,
served locally) with the probability map as an overlay, the lesion outlines with their
diameters, a scale bar in mm and the slide list with categories (extras: serve, wsi)."""

from __future__ import annotations

import argparse

ORDER = 46
HELP = "view a slides output folder in the browser (zoomable slides, map, lesions)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT", help="the --out folder of `metastasis slides`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument(
        "--tiles",
        choices=("auto", "openslide", "reader"),
        default="auto",
        help="who cuts the tiles: OpenSlide's Deep Zoom generator where OpenSlide opens the "
        "slide (auto), always OpenSlide, or the project's own readers (tifffile)",
    )


def run(args: argparse.Namespace) -> int:
    from metastasis.extras import require

    require("the slide viewer", "fastapi", "uvicorn", "tifffile")
    from metastasis.viewer.app import view

    view(args.out, args.host, args.port, backend=args.tiles)
    return 0
