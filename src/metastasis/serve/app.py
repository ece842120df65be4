"""The REST service and web page: `create_app(checkpoint)` -> a FastAPI application.

* ``POST /v1/predict``: one or many images (multipart file fields, or a zip) -> one JSON row
  per image; ``?explain=true`` adds Grad-CAM overlays, ``?resize=true`` accepts patches of other
  sizes (resized to 96x96; refused with 422 otherwise).
* ``GET /v1/model``: architecture, preprocessing, threshold, temperature, metrics, model card.
* ``GET /healthz``, the OpenAPI docs at ``/docs``, and the web page at ``/`` (``static/``).

The model is loaded once, when the application is created; the patches of concurrent requests
are batched together (`batching.MicroBatcher`); uploads are read and decoded in memory
(`forms`, `uploads`), never written to disk. Every refusal is a 4xx answer
``{"error": "one line naming the file and the problem"}``. With an API key every ``/v1`` call
must send it, as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from metastasis import __version__
from metastasis.serve.batching import MicroBatcher
from metastasis.serve.forms import form_files, read_body
from metastasis.serve.model import ServedModel
from metastasis.serve.uploads import Limits, UploadError, decode_patch, expand_uploads

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
# The page loads only its own files; Grad-CAM overlays arrive as data: URLs.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ERROR = {
    "content": {"application/json": {"example": {"error": "patch.png: 64x64, expected 96x96"}}}
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


def create_app(
    checkpoint: str | Path,
    *,
    engine: str = "auto",
    device: str = "auto",
    api_key: str | None = None,
    limits: Limits | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
) -> FastAPI:
    """The service for one checkpoint or run folder (the model is loaded here, once).

    ``max_batch`` patches at most per model call across concurrent requests (0: each request
    on its own), waiting at most ``max_wait_ms`` for more requests to arrive.
    """
    limits = limits or Limits()
    model = ServedModel(checkpoint, engine=engine, device=device)
    batcher = MicroBatcher(model.logits, max_batch=max_batch, max_wait_s=max_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="metastasis",
        version=__version__,
        summary="Tumour probability for 96x96 H&E lymph-node patches (research use, not diagnosis)",
        lifespan=lifespan,
    )
    app.state.model, app.state.batcher, app.state.limits = model, batcher, limits
    _add_error_handlers(app)

    def require_key(request: Request) -> None:
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

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
    errors: dict[int | str, dict[str, Any]] = {
        code: {"description": why, **_ERROR}
        for code, why in [
            (400, "malformed request, zip or zip entry"),
            (401, "missing or wrong API key"),
            (413, "upload, image count, pixel size or zip too large"),
            (415, "not a PNG, JPEG or TIFF image, or not multipart/form-data"),
            (422, "wrong patch size or mode, corrupt image, bad query parameter"),
        ]
    }

    @v1.post("/predict", responses=errors, openapi_extra=_MULTIPART_BODY)
    async def predict(request: Request, explain: bool = False, resize: bool = False) -> Any:
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

    @v1.get("/model", responses={401: errors[401]})
    def describe() -> dict[str, Any]:
        """The model: architecture, preprocessing, threshold, temperature, metrics, model card."""
        return {**model.describe(), "limits": asdict(limits)}

    app.include_router(v1)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness: the model is loaded; whether /v1 needs a key; model calls so far."""
        return {
            "status": "ok",
            "architecture": model.bundle.arch,
            "engine": model.engine,
            "api_key_required": api_key is not None,
            "model_calls": batcher.calls,
            "patches": batcher.images,
            "limits": asdict(limits),
        }

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def page_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            response.headers.update(PAGE_HEADERS)
        return response

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = " ".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)


def serve(
    checkpoint: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key: str | None = None,
    engine: str = "auto",
    device: str = "auto",
    limits: Limits | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
) -> None:
    """Load the checkpoint, then answer on http://HOST:PORT until interrupted (uvicorn)."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        log.warning("listening on %s without an API key: anyone who can reach it can use it", host)
    app = create_app(
        checkpoint,
        engine=engine,
        device=device,
        api_key=api_key,
        limits=limits,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
    )
    log.info(
        "model %s on %s; serving http://%s:%d/",
        app.state.model.bundle.arch,
        app.state.model.engine,
        host,
        port,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
