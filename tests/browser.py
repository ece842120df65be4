"""Opening the package's HTML reports in a real headless Chromium (Debian's, via Playwright).

One browser, in a thread of its own, serves every test of the session (the ``chromium``
fixture of ``tests/conftest.py``); :func:`open_report` loads one page from disk, as a user opens
it, and returns what a reader would notice: console and page errors, requests that failed or
left the machine, every image's natural width, the body rows of each table with an id, and the
script elements.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class ReportBrowser:
    """A headless Chromium that lives in a thread of its own.

    Playwright's sync API runs an asyncio loop in the thread that starts it; kept for a whole
    session in the main thread, that loop would break every later test that uses asyncio
    (``asyncio.run``, another ``sync_playwright``). In its own thread it touches nothing else.
    """

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._playwright: Any = None
        self.browser: Any = None
        self.run(self._start)

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self.browser = self._playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)

    def _stop(self) -> None:
        try:
            if self.browser is not None:
                self.browser.close()
        finally:
            if self._playwright is not None:
                self._playwright.stop()

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the browser's thread (where every Playwright call must be made)."""
        return self._thread.submit(fn, *args).result()

    def close(self) -> None:
        try:
            self.run(self._stop)
        finally:
            self._thread.shutdown()


@contextmanager
def launch() -> Iterator[ReportBrowser]:
    """A headless Chromium, or a skip where Debian's chromium or Playwright is missing."""
    if not CHROMIUM.exists() and not os.environ.get("CI"):
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    browser = ReportBrowser()
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


def open_report(browser: ReportBrowser, path: Path, screenshot: Path | None = None) -> OpenedPage:
    """Load ``path`` (a file:// page), let every image load (lazy ones scrolled into view)."""
    return browser.run(_open, browser.browser, path, screenshot)


def _open(browser: Any, path: Path, screenshot: Path | None) -> OpenedPage:
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
