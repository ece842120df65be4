"""The REST service and web page: `create_app(checkpoint)` -> a FastAPI application.

* ``POST /v1/predict``: one or many images (multipart file fields, or a zip) -> one JSON row
  per image; ``?explain=true`` adds Grad-CAM overlays, ``?resize=true`` accepts patches of other
  sizes (resized to 96x96; refused with 422 otherwise).
* ``GET /v1/model``: architecture, preprocessing, threshold, temperature, metrics, model card.
* ``GET /healthz``, the OpenAPI docs at ``/docs`` and ``/redoc`` (from local files: `docs`),
  and the web page at ``/`` (``static/``).

The routes live on routers (`routes`, `docs`); `create_app` builds the application, its state
(``app.state``: ``model``, ``batcher``, ``limits``, ``api_key``), error handlers and headers.
The model is loaded once, when the application is created; the patches of concurrent requests
are batched together (`batching.MicroBatcher`); uploads are read and decoded in memory
(`forms`, `uploads`), never written to disk. Every refusal is a 4xx answer
``{"error": "one line naming the file and the problem"}``. With an API key every ``/v1`` call
must send it, as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from metastasis import __version__
from metastasis.serve.batching import MicroBatcher
from metastasis.serve.docs import ASSETS, ASSETS_URL, docs
from metastasis.serve.model import ServedModel
from metastasis.serve.routes import STATIC, api, pages
from metastasis.serve.uploads import Limits, UploadError

log = logging.getLogger(__name__)

# The page loads only its own files; Grad-CAM overlays arrive as data: URLs.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(
    checkpoint: str | Path,
    *,
    engine: str = "auto",
    device: str = "auto",
    threshold: float | None = None,
    api_key: str | None = None,
    limits: Limits | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
) -> FastAPI:
    """The service for one checkpoint or run folder (the model is loaded here, once).

    ``max_batch`` patches at most per model call across concurrent requests (0: each request
    on its own), waiting at most ``max_wait_ms`` for more requests to arrive.
    """
    model = ServedModel(checkpoint, engine=engine, device=device, threshold=threshold)
    app = FastAPI(
        title="metastasis",
        version=__version__,
        summary="Tumour probability for 96x96 H&E lymph-node patches (research use, not diagnosis)",
        lifespan=_lifespan,
        docs_url=None,  # served from local files by `docs`
        redoc_url=None,
    )
    app.state.model, app.state.limits, app.state.api_key = model, limits or Limits(), api_key
    app.state.batcher = MicroBatcher(
        model.logits, max_batch=max_batch, max_wait_s=max_wait_ms / 1000
    )
    _add_error_handlers(app)
    app.include_router(docs)
    app.include_router(api)
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    app.middleware("http")(_page_headers)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await app.state.batcher.start()
    yield
    await app.state.batcher.stop()


async def _page_headers(request: Request, call_next: Any) -> Response:
    response: Response = await call_next(request)
    if request.url.path == "/" or request.url.path.startswith("/static/"):
        response.headers.update(PAGE_HEADERS)
    return response


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
    threshold: float | None = None,
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
        threshold=threshold,
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
