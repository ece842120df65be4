"""slides.report: the folder run's page from a table, without a slide run; a slide named like
markup is shown as text, its pictures still found."""

from __future__ import annotations

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
