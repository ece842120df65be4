"""Opening the package's HTML reports in a real headless Chromium (Debian's, via Playwright).

One browser serves every test of the session (the ``chromium`` fixture of ``tests/conftest.py``);
:func:`open_report` loads one page from disk, as a user opens it, and returns what a reader
would notice: console and page errors, requests that failed or left the machine, every image's
natural width, the body rows of each table with an id, and the script elements.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def launch() -> Iterator[Any]:
    """A headless Chromium, or a skip where Debian's chromium or Playwright is missing."""
    if not CHROMIUM.exists() and not os.environ.get("CI"):
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class OpenedPage:
    errors: list[str]  # console errors, uncaught page errors, failed requests
    remote: list[str]  # requests for anything but a local file (a report must work offline)
    images: list[tuple[str, int]]  # (src, naturalWidth) of every <img>
    rows: dict[str, int]  # table id -> rows in its <tbody>
    scripts: int  # <script> elements (a report has none)
    title: str
    heading: str  # the <h1>'s text


def open_report(browser: Any, path: Path, screenshot: Path | None = None) -> OpenedPage:
    """Load ``path`` (a file:// page), let every image load (lazy ones scrolled into view)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    remote: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"{r.url}: {r.failure}"))
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith("file:") else None)
    try:
        page.goto(path.resolve().as_uri())
        page.wait_for_load_state("load")
        page.evaluate("for (const i of document.images) i.scrollIntoView()")
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=15_000)
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])"
        )
        rows = page.eval_on_selector_all(
            "table[id]",
            "ts => ts.map(t => [t.id, t.querySelectorAll(':scope > tbody > tr').length])",
        )
        scripts = page.locator("script").count()
        title, heading = page.title(), page.inner_text("h1")
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()
    return OpenedPage(
        errors, remote, [(s, w) for s, w in images], dict(rows), scripts, title, heading
    )


def assert_sound(opened: OpenedPage) -> None:
    """No errors, nothing fetched from outside, every image decoded, no script."""
    assert opened.errors == [], opened.errors
    assert opened.remote == [], opened.remote
    assert all(width > 0 for _, width in opened.images), opened.images
    assert opened.scripts == 0
