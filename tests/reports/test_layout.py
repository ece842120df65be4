"""The reports at 1280 px in a real headless Chromium: no table widens the page, and the wide
tables a study or a slides run writes fit without scrolling (headers wrap between words, paths
after ``/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from metastasis.engine.trainer import RunResult
from metastasis.reports.html import frame_table, write_page
from metastasis.slides.report import write_report as write_slides_report

MEASURE = """() => ({
  page: document.documentElement.scrollWidth,
  tables: Array.from(document.querySelectorAll('.table-scroll')).map(
    w => [w.querySelector('table').id, w.scrollWidth, w.clientWidth]),
})"""


def _measure(browser: Any, path: Path) -> dict[str, Any]:
    def run(chromium: Any) -> dict[str, Any]:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(path.resolve().as_uri())
            page.wait_for_load_state("load")
            return dict(page.evaluate(MEASURE))
        finally:
            page.close()

    return browser.run(run, browser.browser)


def _trials(n: int = 6) -> pd.DataFrame:
    """A study's trials table as `metastasis tune` writes it (15 columns, long paths)."""
    rows = [
        {
            "number": i,
            "state": "COMPLETE",
            "val_roc_auc": 0.8 + i / 100,
            "best_epoch": 4,
            "epochs_run": 5,
            "lr": 0.0019,
            "weight_decay": 3.1e-6,
            "label_smoothing": 0.0823,
            "augment": "pathology",
            "seconds": 1234.5,
            "host": "gpu-node-17.cluster.example.org",
            "pid": 41230 + i,
            "run_dir": f"/home/someone/studies/fast-cpu-lr-wd/trials/{i}",
            "retry_of": None,
            "note": None,
        }
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def _slides() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "slide": ["patient_004_node_4", "normal_001-with-a-long-file-name"],
            "status": ["ok", "failed"],
            "category": ["macro", None],
            "largest_diameter_mm": [3.214, None],
            "tumour_area_mm2": [5.61, None],
            "lesions": [4, None],
            "tissue_area_mm2": [142.3, None],
            "tiles_classified": [61234, None],
            "tiles_failed": [0, None],
            "level": [1, None],
            "mpp": [0.972, None],
            "reason": [
                None,
                "normal_001-with-a-long-file-name.tif: not a slide (OpenSlide: "
                "unsupported or missing image file)",
            ],
        }
    )


def test_wide_tables_fit_1280_px(tmp_path: Path, chromium: Any) -> None:
    header, rows = frame_table(_trials())
    tune = write_page(
        tmp_path / "tune.html",
        "tune.html",
        title="metastasis study: fast-cpu-lr-wd",
        summary=[["study", "fast-cpu-lr-wd"], ["best_run_dir", str(_trials()["run_dir"][0])]],
        best_params=[["lr", 0.0019]],
        figures=[],
        trials_header=header,
        trials=rows,
        trial_classes=["complete"] * len(rows),
        notes=[],
    )
    slides = write_slides_report(_slides(), tmp_path)
    for path in (tune, slides):
        measured = _measure(chromium, path)
        assert measured["page"] <= 1280, measured
        for table, scroll_width, width in measured["tables"]:
            assert scroll_width <= width, (path.name, table, scroll_width, width)


def test_the_run_report_fits_1280_px(trained_run: RunResult, chromium: Any) -> None:
    measured = _measure(chromium, trained_run.run_dir / "report.html")
    assert measured["page"] <= 1280, measured
    assert {t for t, _, _ in measured["tables"]} == {"metrics", "confusion", "history"}
    assert all(scroll <= width for _, scroll, width in measured["tables"]), measured


def test_a_table_too_wide_scrolls_in_its_wrapper_not_the_page(
    tmp_path: Path, chromium: Any
) -> None:
    wide = pd.DataFrame({f"column_{i}": [123456789.123] for i in range(40)})
    header, rows = frame_table(wide)
    path = write_page(
        tmp_path / "wide.html",
        "tune.html",
        title="t",
        summary=[],
        best_params=[],
        figures=[],
        trials_header=header,
        trials=rows,
        trial_classes=[""],
        notes=[],
    )
    measured = _measure(chromium, path)
    assert measured["page"] <= 1280, measured
    (trials,) = [t for t in measured["tables"] if t[0] == "trials"]
    assert trials[1] > trials[2]  # the wrapper scrolls
