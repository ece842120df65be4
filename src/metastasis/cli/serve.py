"""A REST service and web page for a checkpoint: POST /v1/predict, GET /v1/model, GET /healthz,
the OpenAPI docs at /docs and a page at / (the `serve` extra: pip install 'metastasis[serve]').
"""

from __future__ import annotations

import argparse
import os

from metastasis.cli.common import add_setting_flags, inference_values
from metastasis.inference.options import InferenceOptions

ORDER = 45
HELP = "REST service and web page for a checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key",
        default=os.environ.get("METASTASIS_API_KEY"),
        help="every /v1 call must send it (X-API-Key or Authorization: Bearer); "
        "default $METASTASIS_API_KEY, none when unset",
    )
    add_setting_flags(p, InferenceOptions, ("engine", "device", "threshold"))
    p.add_argument("--max-upload-mb", type=float, default=32, help="largest request body")
    p.add_argument("--max-images", type=int, default=256, help="images per request")
    p.add_argument(
        "--max-batch",
        type=int,
        default=64,
        help="patches per model call across concurrent requests (0: one call per request)",
    )


def run(args: argparse.Namespace) -> int:
    from metastasis.extras import SERVE, require

    require("the REST service", *SERVE)
    from metastasis.serve.app import serve
    from metastasis.serve.uploads import Limits

    inference = inference_values(args)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024**2), max_images=args.max_images)
    serve(
        args.checkpoint,
        args.host,
        args.port,
        api_key=args.api_key or None,
        engine=inference["engine"],
        device=inference["device"],
        threshold=inference["threshold"],
        limits=limits,
        max_batch=args.max_batch,
    )
    return 0
