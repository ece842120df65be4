"""The OpenAPI docs, offline: Swagger UI at ``/docs``, ReDoc at ``/redoc``.

FastAPI's own docs pages load their scripts, styles and favicon from CDNs, and ReDoc its fonts
from Google; these load them from the files of the ``fastapi-offline`` package (the ``serve``
extra), served at :data:`ASSETS_URL` (FastAPI's "self-hosting JavaScript and CSS for docs"
recipe: ``docs_url=None, redoc_url=None``, these routes, and a static mount). A
Content-Security-Policy keeps every page load on the service itself: what a bundle would fetch
from elsewhere (ReDoc's footer logo, Swagger UI's validator badge) is never requested.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

ASSETS = Path(str(resources.files("fastapi_offline").joinpath("static")))
ASSETS_URL = "/docs-assets"
DOCS_HEADERS = {
    # FastAPI's pages start Swagger UI / ReDoc with an inline script; ReDoc's search runs in a
    # worker made from a blob: URL
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(DOCS_HEADERS)
    return page


async def swagger_ui_html(request: Request) -> HTMLResponse:
    app, root = request.app, _root(request)
    redirect = app.swagger_ui_oauth2_redirect_url
    return _offline(
        get_swagger_ui_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + redirect if redirect else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
    )


async def swagger_ui_redirect(request: Request) -> HTMLResponse:
    return _offline(get_swagger_ui_oauth2_redirect_html())


async def redoc_html(request: Request) -> HTMLResponse:
    app, root = request.app, _root(request)
    return _offline(
        get_redoc_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
    )


# Plain routes (GET and HEAD), as FastAPI adds its own docs pages
docs = APIRouter()
docs.add_route("/docs", swagger_ui_html, include_in_schema=False)
docs.add_route("/docs/oauth2-redirect", swagger_ui_redirect, include_in_schema=False)
docs.add_route("/redoc", redoc_html, include_in_schema=False)
