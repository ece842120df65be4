"""The slide viewer's web application: ``create_app(out)`` -> a FastAPI application serving a
``metastasis slides`` output folder, and ``view(out, host, port)``, which runs it with uvicorn.

* ``GET /``: the viewer page (``static/``: OpenSeadragon, vendored, and the page's own script);
* ``GET /api/slides``: the slide list with categories, and the first viewable slide described as
  below (the page shows it without another round trip); ``GET /api/slides/{name}``: one slide's
  size, um/px, Deep Zoom address and the probability overlay's placement;
  ``GET /api/slides/{name}/lesions``: the lesion outlines with their diameters;
* ``GET /slides/{name}/slide.dzi`` and ``/slides/{name}/slide_files/{level}/{col}_{row}.jpeg``:
  Deep Zoom tiles (:mod:`metastasis.viewer.deepzoom`); ``/slides/{name}/probability.png``: the
  colourised map (:mod:`metastasis.viewer.overlay`); ``GET /healthz``.

A name in a URL is only ever a key of the folder's table (:mod:`metastasis.viewer.folder`),
never a path. Unknown slides, levels and tiles are a 404 with one line
``{"error": "..."}``. Slides are opened on first use and a few kept open (``OPEN_SLIDES``);
``view`` opens the first one before it starts answering (``Viewer.warm``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from metastasis import __version__
from metastasis.errors import DataError
from metastasis.viewer.deepzoom import TileSource, TileUnavailable, open_tiles
from metastasis.viewer.folder import SlideEntry, SlidesFolder, UnknownSlide
from metastasis.viewer.overlay import lesion_outlines, overlay_png, placement, read_probability

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
OPEN_SLIDES = 4  # slides kept open at once (least recently used closed first)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

routes = APIRouter()


class Viewer:
    """What the application holds: the folder, open slides (LRU), cached overlays."""

    def __init__(self, out: str | Path, backend: str = "auto") -> None:
        self.folder = SlidesFolder(out)
        self.backend = backend
        self._open: OrderedDict[str, TileSource] = OrderedDict()
        self._overlays: dict[str, bytes] = {}
        self._lesions: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def entry(self, name: str) -> SlideEntry:
        try:
            entry = self.folder.slide(name)
        except UnknownSlide as exc:
            raise StarletteHTTPException(404, str(exc)) from None
        if not entry.ok:
            raise StarletteHTTPException(404, f"slide {name!r}: {entry.status}, nothing to show")
        return entry

    def tiles(self, name: str) -> TileSource:
        entry = self.entry(name)
        with self._lock:
            if name in self._open:
                self._open.move_to_end(name)
                return self._open[name]
            path = entry.slide_path(self.folder.out)
            if path is None:
                where = entry.summary.get("path") or entry.table_path
                raise StarletteHTTPException(404, f"slide {name!r}: its file {where} is not found")
            try:
                source = open_tiles(path, entry.mpp(), entry.folder / "thumbnail.png",
                                    self.backend, entry.summary.get("reader"))  # fmt: skip
            except DataError as exc:
                raise StarletteHTTPException(404, f"slide {name!r}: {exc}") from None
            self._open[name] = source
            while len(self._open) > OPEN_SLIDES:
                self._open.popitem(last=False)[1].close()
            return source

    def overlay(self, name: str) -> bytes:
        entry = self.entry(name)
        if name not in self._overlays:
            try:
                png = overlay_png(read_probability(entry.folder / "probability.npy"))
            except DataError as exc:
                raise StarletteHTTPException(404, f"slide {name!r}: {exc}") from None
            self._overlays[name] = png
            while len(self._overlays) > OPEN_SLIDES * 4:
                self._overlays.pop(next(iter(self._overlays)))
        return self._overlays[name]

    def describe(self, name: str) -> dict[str, Any]:
        """One slide as the page needs it."""
        entry = self.entry(name)
        source = self.tiles(name)
        base = f"/slides/{_quote(name)}"
        overlay = None
        meta = entry.probability_meta()
        shape = meta.get("shape") if meta else None
        if meta and isinstance(shape, list) and len(shape) == 2:
            try:
                overlay = {
                    "url": f"{base}/probability.png",
                    **placement(meta, (shape[0], shape[1])),
                }
            except DataError:
                overlay = None
        s = entry.summary
        return {
            **entry.listing(),
            "width": source.dz.width,
            "height": source.dz.height,
            "mpp": entry.mpp(),
            "backend": source.backend,
            "dzi": f"{base}/slide.dzi",
            "overlay": overlay,
            "lesions_url": f"/api/slides/{_quote(name)}/lesions",
            "threshold": s.get("threshold"),
            "tumour_area_mm2": s.get("tumour_area_mm2"),
            "model_warning": s.get("model_warning"),
        }

    def lesions(self, name: str) -> dict[str, Any]:
        """The slide's lesion outlines (``regions.geojson``, read once): fetched by the page
        after the first tiles are asked for, so a slide with thousands does not delay them."""
        entry = self.entry(name)
        if name not in self._lesions:
            drawn, truncated = _lesions(entry.folder / "regions.geojson")
            self._lesions[name] = {"lesions": drawn, "truncated": truncated}
            while len(self._lesions) > OPEN_SLIDES * 4:
                self._lesions.pop(next(iter(self._lesions)))
        return self._lesions[name]

    def first(self) -> str | None:
        """The slide the page opens when its address names none: the first viewable one."""
        return next((name for name, e in self.folder.slides.items() if e.ok), None)

    def warm(self) -> None:
        """Before the server answers: open the first slide, make its smallest tile, overlay
        and outlines (the file's first read, the first JPEG and PNG encodes), so the first page
        load after start costs what later ones cost. A slide that fails here fails the same
        way, one line, when the page asks for it."""
        name = self.first()
        if name is None:
            return
        try:
            self.tiles(name).jpeg(0, 0, 0)
            self.overlay(name)
            self.lesions(name)
        except (StarletteHTTPException, TileUnavailable) as exc:
            log.warning("slide %r not prepared at start: %s", name, getattr(exc, "detail", exc))

    def close(self) -> None:
        with self._lock:
            for source in self._open.values():
                source.close()
            self._open.clear()


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _lesions(path: Path) -> tuple[list[dict[str, Any]], bool]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], False
    return lesion_outlines(data)


def _viewer(request: Request) -> Viewer:
    viewer: Viewer = request.app.state.viewer
    return viewer


@routes.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@routes.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@routes.get("/api/slides")
def slides(request: Request) -> dict[str, Any]:
    """The slides, and the first viewable one described (the page opens it without a second
    round trip when its address names no slide)."""
    viewer = _viewer(request)
    first = viewer.first()
    try:
        described = viewer.describe(first) if first is not None else None
    except StarletteHTTPException:
        described = None  # the page asks for it again and shows the error
    return {"folder": str(viewer.folder.out), "slides": viewer.folder.listing(),
            "first": described, "version": __version__}  # fmt: skip


@routes.get("/api/slides/{name}")
def slide(name: str, request: Request) -> JSONResponse:
    return JSONResponse(_viewer(request).describe(name), headers={"Cache-Control": "no-cache"})


@routes.get("/api/slides/{name}/lesions")
def lesions(name: str, request: Request) -> JSONResponse:
    return JSONResponse(_viewer(request).lesions(name), headers={"Cache-Control": "no-cache"})


@routes.get("/slides/{name}/slide.dzi")
def dzi(name: str, request: Request) -> Response:
    xml = _viewer(request).tiles(name).dz.dzi()
    return Response(xml, media_type="application/xml", headers={"Cache-Control": "no-cache"})


@routes.get("/slides/{name}/slide_files/{level}/{tile}")
def tile(name: str, level: int, tile: str, request: Request) -> Response:
    source = _viewer(request).tiles(name)
    stem, dot, fmt = tile.partition(".")
    col, _, row = stem.partition("_")
    if dot != "." or fmt != "jpeg" or not col.isdigit() or not row.isdigit():
        raise StarletteHTTPException(404, f"slide {name!r}: no tile {tile!r} (COL_ROW.jpeg)")
    try:
        data = source.jpeg(level, int(col), int(row))
    except TileUnavailable as exc:
        raise StarletteHTTPException(404, f"slide {name!r}: {exc}") from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@routes.get("/slides/{name}/probability.png")
def probability(name: str, request: Request) -> Response:
    png = _viewer(request).overlay(name)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})


def create_app(out: str | Path, backend: str = "auto") -> FastAPI:
    """The viewer of the slides output folder ``out`` (its ``slides.csv`` is read here, once).

    ``backend``: ``auto`` (OpenSlide's Deep Zoom generator where OpenSlide opens the slide, else
    the project's readers), ``openslide`` or ``reader``."""
    viewer = Viewer(out, backend)
    app = FastAPI(title="metastasis slide viewer", version=__version__, docs_url=None,
                  redoc_url=None, openapi_url=None)  # fmt: skip
    app.state.viewer = viewer
    app.include_router(routes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            response.headers.update(PAGE_HEADERS)
        return response

    return app


def view(out: str | Path, host: str = "127.0.0.1", port: int = 8001, backend: str = "auto") -> None:
    """Serve the viewer of ``out`` on http://HOST:PORT until interrupted (uvicorn)."""
    import uvicorn

    app = create_app(out, backend)
    app.state.viewer.warm()
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach it can see these slides", host)
    n = len(app.state.viewer.folder.slides)
    print(f"{n} slides of {out}: open http://{host}:{port}/ (Ctrl+C to stop)", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        app.state.viewer.close()
