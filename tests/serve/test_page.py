"""The web page in a real headless Chromium against the live server: upload, results, CSV;
and the API docs pages, which load nothing from outside the service."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.helpers import patches, write_image
from tests.serve.conftest import API_KEY, LiveServer

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="module")
def browser() -> object:
    if not CHROMIUM.exists() and not os.environ.get("CI"):
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def test_upload_see_results_and_download_csv(
    live_server: LiveServer, browser: object, tmp_path: Path
) -> None:
    images, _ = patches(3, seed=7)
    paths = [write_image(tmp_path / f"patch{i}.png", img) for i, img in enumerate(images)]
    paths.append(write_image(tmp_path / "patch3.tif", images[0]))
    with live_server.client() as c:
        api = {
            r["id"]: r
            for r in c.post(
                "/v1/predict", files=[("files", (p.name, p.read_bytes())) for p in paths]
            ).json()["predictions"]
        }

    viewport = {"width": 1100, "height": 900}
    page = browser.new_page(viewport=viewport, accept_downloads=True)  # type: ignore[attr-defined]
    try:
        page.goto(live_server.url + "/")
        # keyboard: the drop zone and the file button are reached with Tab, focus is visible
        focus = "[document.activeElement.id, getComputedStyle(document.activeElement).outlineStyle]"
        page.keyboard.press("Tab")
        assert page.evaluate(focus) == ["drop", "solid"]
        page.keyboard.press("Tab")
        assert page.evaluate(focus) == ["pick", "solid"]
        page.get_by_label("API key").fill(API_KEY)
        page.set_input_files("#files", [str(p) for p in paths])
        page.wait_for_selector("#results tbody tr:nth-child(4)", timeout=60_000)
        page.wait_for_function(
            "Array.from(document.querySelectorAll('#results img'))"
            ".every(i => i.complete && i.naturalWidth === 96)"
        )
        rows = page.eval_on_selector_all(
            "#results tbody tr",
            "trs => trs.map(tr => [tr.dataset.id, tr.querySelector('.probability').innerText,"
            " tr.querySelector('.label').innerText, tr.querySelectorAll('img').length])",
        )
        assert page.inner_text("#error") == ""
        shot = Path(os.environ.get("METASTASIS_SCREENSHOT", tmp_path / "page.png"))
        page.screenshot(path=str(shot), full_page=True)
        with page.expect_download() as info:
            page.get_by_role("button", name="Download CSV").click()
        csv_path = tmp_path / "predictions.csv"
        info.value.save_as(csv_path)
    finally:
        page.close()

    assert [r[0] for r in rows] == [p.name for p in paths]
    for row_id, prob, label, n_images in rows:
        assert prob.splitlines()[0] == f"{api[row_id]['probability']:.4f}"
        assert label == f"{api[row_id]['class_name']} ({api[row_id]['label']})"
        assert n_images == 2  # the patch and its Grad-CAM overlay
    with csv_path.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0])[:3] == ["id", "probability", "prediction"]  # the CSV vocabulary
    assert [r["id"] for r in table] == [p.name for p in paths]
    for r in table:
        assert float(r["probability"]) == pytest.approx(api[r["id"]]["probability"], abs=1e-9)
        assert int(r["prediction"]) == api[r["id"]]["label"]
        assert float(r["threshold"]) == pytest.approx(api[r["id"]]["threshold"])
    assert shot.stat().st_size > 10_000


def test_page_refusal_is_shown(live_server: LiveServer, browser: object, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        page.goto(live_server.url + "/")
        page.get_by_label("API key").fill(API_KEY)
        page.set_input_files("#files", [str(bad)])
        page.wait_for_selector("#error:not([hidden])")
        text = page.inner_text("#error")
    finally:
        page.close()
    assert "notes.png" in text and "not a PNG, JPEG, TIFF image" in text


def test_drop_a_patch_on_the_drop_zone(
    live_server: LiveServer, browser: object, tmp_path: Path
) -> None:
    path = write_image(tmp_path / "dropped.png", patches(1, seed=9)[0][0])
    data = list(path.read_bytes())
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        page.goto(live_server.url + "/")
        page.get_by_label("API key").fill(API_KEY)
        page.get_by_label("Grad-CAM overlays").uncheck()
        transfer = page.evaluate_handle(
            """bytes => {
                const dt = new DataTransfer();
                const file = new File([new Uint8Array(bytes)], "dropped.png", {type: "image/png"});
                dt.items.add(file);
                return dt;
            }""",
            data,
        )
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        page.wait_for_selector("#results tbody tr")
        row = page.eval_on_selector(
            "#results tbody tr", "tr => [tr.dataset.id, tr.querySelectorAll('img').length]"
        )
    finally:
        page.close()
    assert row == ["dropped.png", 1]  # the patch shown from the browser; no overlay asked


@pytest.mark.parametrize(
    ("path", "operation"),
    [("/docs", ".opblock-summary-path[data-path='{}']"), ("/redoc", 'text="{}"')],
)
def test_docs_render_with_the_network_blocked(
    live_server: LiveServer, browser: object, path: str, operation: str
) -> None:
    outside: list[str] = []

    def local_only(route: object) -> None:  # every request but the service's own is refused
        url = route.request.url  # type: ignore[attr-defined]
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()  # type: ignore[attr-defined]
        else:
            outside.append(url)
            route.abort()  # type: ignore[attr-defined]

    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    failed: list[tuple[str, str]] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append((r.url, r.failure)))
    try:
        page.route("**/*", local_only)
        page.goto(live_server.url + path)
        for route in ("/v1/predict", "/v1/model", "/healthz"):  # the operations list rendered
            page.locator(operation.format(route)).first.wait_for(timeout=30_000)
        page.wait_for_load_state("networkidle")
    finally:
        page.close()
    assert outside == [], outside  # nothing left the machine
    assert errors == [], errors
    # what a bundle would fetch from elsewhere (ReDoc's footer logo) the page's policy refuses
    assert all(why == "csp" and "127.0.0.1" not in url for url, why in failed), failed


def test_a_model_trained_on_synthetic_drawings_says_so_first(
    live_server: LiveServer, browser: object
) -> None:
    """The tiny served model learned the built-in drawings: the page says so above all else,
    as /healthz and /v1/model do."""
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        page.goto(live_server.url + "/")
        warning = page.locator("#model-warning")
        warning.wait_for(state="visible", timeout=15_000)
        assert warning.inner_text() == (
            "This model was trained on synthetic drawings, not tissue: not for real slides."
        )
    finally:
        page.close()
    with live_server.client() as c:
        model = c.get("/v1/model").json()
        assert c.get("/healthz").json()["warning"] == model["warning"]
    assert model["synthetic"] is True and "not for real slides" in model["warning"]
