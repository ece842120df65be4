"""The service's routes, on two routers that `app.create_app` includes.

* :data:`api`: ``POST /v1/predict`` and ``GET /v1/model``, behind the API key when there is one;
* :data:`pages`: ``GET /healthz`` and the web page at ``/`` (its files under ``static/``).

Each route finds what the application holds (``request.app.state``: ``model``, ``batcher``,
``limits``, ``api_key``) through the dependencies below, so the routes are plain module-level
functions and one application's state never leaks into another's.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from metastasis.serve.batching import MicroBatcher
from metastasis.serve.forms import form_files, read_body
from metastasis.serve.model import ServedModel
from metastasis.serve.uploads import Limits, decode_patch, expand_uploads

STATIC = Path(__file__).resolve().parent / "static"
_ERROR = {
    "content": {"application/json": {"example": {"error": "patch.png: 64x64, expected 96x96"}}}
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": why, **_ERROR}
    for code, why in [
        (400, "malformed request, zip or zip entry"),
        (401, "missing or wrong API key"),
        (413, "upload, image count, pixel size or zip too large"),
        (415, "not a PNG, JPEG or TIFF image, or not multipart/form-data"),
        (422, "wrong patch size or mode, corrupt image, bad query parameter"),
    ]
}
_MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "PNG, JPEG or TIFF patches, or one zip of them",
                        }
                    },
                    "required": ["files"],
                }
            }
        },
    }
}


def _model(request: Request) -> ServedModel:
    return request.app.state.model


def _batcher(request: Request) -> MicroBatcher:
    return request.app.state.batcher


def _limits(request: Request) -> Limits:
    return request.app.state.limits


Model = Annotated[ServedModel, Depends(_model)]
Batcher = Annotated[MicroBatcher, Depends(_batcher)]
UploadLimits = Annotated[Limits, Depends(_limits)]


def require_key(request: Request) -> None:
    """Refuse a ``/v1`` call without the application's API key (none set: every call passes)."""
    api_key: str | None = request.app.state.api_key
    if api_key is None:
        return
    sent = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if sent is None and auth[:7].lower() == "bearer ":
        sent = auth[7:].strip()
    if sent is None or not secrets.compare_digest(sent.encode(), api_key.encode()):
        raise StarletteHTTPException(
            401,
            "missing or wrong API key (send X-API-Key: KEY or Authorization: Bearer KEY)",
            headers={"WWW-Authenticate": "Bearer"},
        )


api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
pages = APIRouter()


@api.post("/predict", responses=ERRORS, openapi_extra=_MULTIPART_BODY)
async def predict(
    request: Request,
    model: Model,
    batcher: Batcher,
    limits: UploadLimits,
    explain: bool = False,
    resize: bool = False,
) -> Any:
    """Tumour probabilities for the uploaded patches, one row per image.

    ``probability`` is after the checkpoint's temperature (calibrated; ``label`` is 1
    when it is at least ``threshold``), ``uncalibrated_probability`` before it.
    ``explain=true`` adds ``overlay`` (Grad-CAM) and ``patch`` as PNG data URLs.
    """
    body = await read_body(
        request.stream(), request.headers.get("content-length"), limits.max_upload_bytes
    )
    files = expand_uploads(form_files(body, request.headers.get("content-type", "")), limits)
    patches = await run_in_threadpool(
        lambda: np.stack([decode_patch(f, limits, resize) for f in files])
    )
    rows = model.rows([f.name for f in files], await batcher.submit(patches))
    if explain:
        for row, extra in zip(rows, await batcher.run(model.overlays, patches), strict=True):
            row.update(extra)
    return {
        "architecture": model.bundle.arch,
        "engine": model.engine,
        "threshold": float(model.bundle.threshold),
        "temperature": float(model.bundle.temperature),
        "count": len(rows),
        "predictions": rows,
    }


@api.get("/model", responses={401: ERRORS[401]})
def describe(model: Model, limits: UploadLimits) -> dict[str, Any]:
    """The model: architecture, preprocessing, threshold, temperature, metrics, model card."""
    return {**model.describe(), "limits": asdict(limits)}


@pages.get("/healthz")
def healthz(
    request: Request, model: Model, batcher: Batcher, limits: UploadLimits
) -> dict[str, Any]:
    """Liveness: the model is loaded; whether /v1 needs a key; model calls so far."""
    return {
        "status": "ok",
        "architecture": model.bundle.arch,
        "warning": model.bundle.warning,
        "engine": model.engine,
        "api_key_required": request.app.state.api_key is not None,
        "model_calls": batcher.calls,
        "patches": batcher.images,
        "limits": asdict(limits),
    }


@pages.get("/", include_in_schema=False)
def page() -> Response:
    return FileResponse(STATIC / "index.html")
