"""slides.report: the folder run's page from a table, without a slide run; a slide named like
markup is shown as text, its pictures still found."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tests.browser import assert_sound, open_report
from tests.helpers import write_image

from metastasis.slides.report import NOTICE, write_report

HOSTILE = "<script>alert(1)</script>#?"  # markup, and characters a URL would misread


def test_a_hostile_slide_name_is_text_and_its_pictures_load(tmp_path: Path, chromium: Any) -> None:
    name = HOSTILE.replace("/", "_")  # a file name cannot hold "/"
    table = pd.DataFrame(
        {
            "slide": [name, "b"],
            "status": ["ok", "failed"],
            "reason": [None, f"{HOSTILE}: not a slide"],
            "category": ["macro", None],
            "tumour_area_mm2": [1.23456, np.nan],
            "level": [1, None],
        }
    )
    stages = pd.DataFrame(
        {"patient": [HOSTILE], "slides": [name], "categories": ["macro"], "stage": ["pN1"]}
    )
    for picture in ("heatmap", "thumbnail"):
        write_image(tmp_path / name / f"{picture}.png", np.full((8, 12, 3), 200, np.uint8))
    page = write_report(table, tmp_path, stages).read_text()
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;" in page
    assert NOTICE in page and page.count("<style>") == 1
    opened = open_report(chromium, tmp_path / "report.html")
    assert_sound(opened)
    assert opened.rows == {"slides": 2, "patients": 1}
    assert [width for _, width in opened.images] == [12, 12]  # both found despite the name


def _page_widths(browser: Any, path: Path) -> tuple[int, int, list[int]]:
    page = browser.new_page(viewport={"width": 700, "height": 900})
    try:
        page.goto(path.resolve().as_uri())
        page.wait_for_load_state("load")
        boxes = page.eval_on_selector_all(
            ".table-scroll", "els => els.map(e => e.getBoundingClientRect().right)"
        )
        return page.evaluate("document.documentElement.scrollWidth"), 700, boxes
    finally:
        page.close()


def test_headings_in_words_captions_and_no_overflow(tmp_path: Path, chromium: Any) -> None:
    table = pd.DataFrame(
        {
            "slide": ["node_" + "x" * 60, "n2"],
            "status": ["ok", "ok"],
            "category": ["micro", "negative"],
            "largest_diameter_mm": [1.23456, None],
            "tumour_area_mm2": [0.5, 0.0],
            "lesions": [3, 0],
            "mpp": [0.243, 0.243],
            "reason": ["", ""],
        }
    )
    for picture in ("heatmap", "thumbnail"):
        write_image(tmp_path / "n2" / f"{picture}.png", np.full((8, 12, 3), 200, np.uint8))
    page = write_report(table, tmp_path).read_text()
    headings = re.findall(r'<th scope="col" title="([^"]+)">(.*?)</th>', page)
    shown = {key: re.sub(r"<[^>]+>", "", text) for key, text in headings}
    assert shown["largest_diameter_mm"] == "largest lesion: longest diameter (mm)"
    assert shown["mpp"] == "level-0 resolution (µm/pixel)"
    assert all("_" not in text for text in shown.values()), shown  # no raw column names
    assert ">micro-metastasis<" in page and "ITC = isolated tumour cells" in page
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(captions) == page.count("<img ") == 2 and captions[0].startswith("Heatmap of n2")
    scroll_width, viewport, rights = chromium.run(
        _page_widths, chromium.browser, tmp_path / "report.html"
    )
    assert scroll_width <= viewport and all(r <= viewport for r in rights)  # tables scroll inside
