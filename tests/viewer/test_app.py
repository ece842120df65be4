"""viewer.app on a real uvicorn: the slide list with categories, a slide's description (size,
um/px, overlay placement, lesion outlines with diameters), the DZI and its tiles, the
probability overlay, and one-line 404s for unknown slides, levels, tiles and paths."""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image
from starlette.exceptions import HTTPException
from tests.viewer.conftest import COLS, ROWS, LiveViewer

from metastasis.cli import main
from metastasis.viewer.app import Viewer


def test_slide_list_and_description(live_viewer: LiveViewer) -> None:
    with live_viewer.client() as c:
        listed = c.get("/api/slides").json()
        info = c.get("/api/slides/blob").json()
        drawn = c.get(info["lesions_url"]).json()
    listing = listed["slides"]
    assert listed["first"] == info  # the page opens the first slide without another request
    assert [(s["name"], s["status"], s["viewable"]) for s in listing] == [
        ("blob", "ok", True),
        ("broken", "failed", False),
    ]
    out = live_viewer.run.out
    summary = json.loads((out / "blob" / "summary.json").read_text())
    meta = json.loads((out / "blob" / "probability.json").read_text())
    assert listing[0]["category"] == info["category"] == summary["category"]
    assert (info["width"], info["height"]) == (COLS * 192, ROWS * 192)
    assert info["mpp"] == pytest.approx(summary["mpp"])
    ov = info["overlay"]
    assert (ov["x"], ov["y"]) == tuple(meta["cell_origin_level0"])
    assert ov["width"] == pytest.approx(meta["shape"][1] * meta["step_level0"])
    regions = json.loads((out / "blob" / "regions.geojson").read_text())["features"]
    diameters = [f["properties"]["measurements"]["longest_diameter_mm"] for f in regions]
    assert [les["diameter_mm"] for les in drawn["lesions"]] == diameters
    assert drawn["truncated"] is False
    assert info["backend"] == "reader (tifffile)"  # the run's reader (cheaper than OpenSlide's)
    assert len(diameters) == summary["lesions"] >= 1


def test_dzi_tiles_and_overlay(live_viewer: LiveViewer) -> None:
    with live_viewer.client() as c:
        dzi = ElementTree.fromstring(c.get("/slides/blob/slide.dzi").content)
        size = dzi.find("{http://schemas.microsoft.com/deepzoom/2008}Size")
        assert size is not None and (size.get("Width"), size.get("Height")) == ("1920", "1536")
        first, last = (c.get(f"/slides/blob/slide_files/11/{t}.jpeg") for t in ("0_0", "7_6"))
        png = c.get("/slides/blob/probability.png")
    assert first.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(first.content)).size == (255, 255)  # 254 + 1 overlap
    assert Image.open(io.BytesIO(last.content)).size == (1920 - 7 * 254 + 1, 1536 - 6 * 254 + 1)
    overlay = np.asarray(Image.open(io.BytesIO(png.content)))
    prob = np.load(live_viewer.run.out / "blob" / "probability.npy")
    k = overlay.shape[0] // prob.shape[0]
    assert overlay.shape == (prob.shape[0] * k, prob.shape[1] * k, 4)
    assert (overlay[::k, ::k, 3] == 0).tolist() == np.isnan(prob).tolist()  # unclassified: clear


@pytest.mark.parametrize(
    "url",
    [
        "/api/slides/nope",
        "/api/slides/broken",  # failed: nothing to show
        "/api/slides/nope/lesions",
        "/slides/nope/slide.dzi",
        "/slides/..%2F..%2Fetc%2Fpasswd/slide.dzi",
        "/slides/../slides.csv",
        "/slides/slides.csv/slide.dzi",
        "/slides/blob/slide_files/99/0_0.jpeg",
        "/slides/blob/slide_files/11/8_0.jpeg",
        "/slides/blob/slide_files/11/0_0.png",
        "/slides/blob/slide_files/11/..%2F..%2Fsummary.json",
        "/slides/nope/probability.png",
    ],
)
def test_unknown_things_are_one_line_404s(live_viewer: LiveViewer, url: str) -> None:
    with live_viewer.client() as c:
        r = c.get(url)
    assert r.status_code == 404, r.text
    error = (
        r.json().get("error") if r.headers["content-type"].startswith("application/json") else ""
    )
    assert error == "Not Found" or ("\n" not in error and len(error) < 300), r.text


def test_a_slide_file_gone_is_a_404_naming_it(
    live_viewer: LiveViewer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    shutil.copytree(live_viewer.run.out, out)
    summary = json.loads((out / "blob" / "summary.json").read_text())
    summary["path"] = str(tmp_path / "moved.tif")
    (out / "blob" / "summary.json").write_text(json.dumps(summary))
    (out / "slides.csv").write_text((out / "slides.csv").read_text().replace(
        str(live_viewer.run.slide), str(tmp_path / "moved.tif")))  # fmt: skip
    viewer = Viewer(out)
    with caplog.at_level(logging.WARNING, logger="metastasis.viewer.app"):
        viewer.warm()  # what `metastasis view` does before it answers: a warning, no stop
    assert "moved.tif is not found" in caplog.text
    with pytest.raises(HTTPException) as caught:
        viewer.tiles("blob")
    assert caught.value.status_code == 404 and "moved.tif is not found" in caught.value.detail


def test_view_without_a_slides_table_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["view", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metastasis view: error:") and "slides.csv" in err and "\n" not in err
