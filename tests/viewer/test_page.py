"""The viewer page in a real headless Chromium, served by a real uvicorn: the first tiles load,
the probability overlay toggles and follows the opacity slider, the lesion outlines and the
scale bar are drawn, the zoom buttons zoom, zooming in loads tiles of a finer level; nothing
leaves the machine."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from tests.viewer.conftest import LiveViewer

STATE = "window.metastasisViewer"


def _until(page: Any, expression: str, timeout: float = 30.0) -> Any:
    """Poll ``expression`` (the page's CSP forbids eval, so no wait_for_function)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


def _session(browser: Any, url: str) -> dict[str, Any]:
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    errors: list[str] = []
    remote: list[str] = []
    tiles: list[int] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"{r.url}: {r.failure}"))
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(url) else None)

    def tile(r: Any) -> None:
        m = re.search(r"/slide_files/(\d+)/\d+_\d+\.jpeg$", r.url)
        if m:
            tiles.append(int(m.group(1)))

    page.on("request", tile)
    out: dict[str, Any] = {"errors": errors, "remote": remote}
    try:
        page.goto(url + "/")
        _until(page, f"{STATE} && {STATE}.fullyLoadedMs !== null && {STATE}.overlay !== null")
        out["first_levels"] = sorted(set(page.evaluate(f"{STATE}.levels")))
        out["list"] = page.inner_text("#slides")
        opacity = f"{STATE}.overlay.getOpacity()"
        out["opacity"] = [page.evaluate(opacity)]
        page.uncheck("#show-overlay")
        out["opacity"].append(page.evaluate(opacity))
        page.check("#show-overlay")
        page.fill("#opacity", "80")
        out["opacity"].append(page.evaluate(opacity))
        _until(page, f"{STATE}.lesionsLoaded")
        out["lesions"] = page.evaluate(f"{STATE}.lesionsDrawn")
        out["scale"] = page.inner_text("#scalebar")
        before = max(tiles)
        zoom = f"{STATE}.viewer.viewport.getZoom()"
        home = page.evaluate(zoom)
        page.click("#zoom-in")  # the page's own buttons (OpenSeadragon's are not loaded)
        out["zoom"] = [home, page.evaluate(zoom)]
        page.click("#zoom-home")
        out["zoom"].append(page.evaluate(zoom))
        page.evaluate(f"{STATE}.viewer.viewport.zoomTo({STATE}.viewer.viewport.getMaxZoom())")
        _until(page, f"Math.max(...{STATE}.levels) > {before}")
        out["levels_before"], out["levels_after"] = before, max(tiles)
    finally:
        page.close()
    return out


def test_viewer_in_chromium(live_viewer: LiveViewer, chromium: Any) -> None:
    seen = chromium.run(_session, chromium.browser, live_viewer.url)
    assert seen["errors"] == [] and seen["remote"] == [], seen
    assert seen["first_levels"] and max(seen["first_levels"]) < 11  # 1920 px in ~730 px
    assert "blob" in seen["list"] and "broken" in seen["list"] and "failed" in seen["list"]
    assert seen["opacity"] == [0.5, 0, 0.8]  # toggled off, on, then the slider
    assert seen["lesions"] >= 1
    assert re.fullmatch(r"\d+(\.\d+)? (mm|µm)", seen["scale"].strip()), seen["scale"]
    home, zoomed, back = seen["zoom"]
    assert zoomed == pytest.approx(1.5 * home) and back == pytest.approx(home)
    assert seen["levels_after"] > seen["levels_before"]  # zooming in: a finer level
