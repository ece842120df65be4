"""reports.explanations: tiles of patches beside their Grad-CAM overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metastasis.reports.evaluation import write_html_report
from metastasis.reports.explanations import Explained, plot_explanation, plot_explanations
from metastasis.reports.figures import save_figure


def _item(k: int, truth: str | None) -> Explained:
    rng = np.random.default_rng(k)
    image = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    return Explained(f"patch{k}", image, image[::-1].copy(), 0.25 * k, "tumour", truth)


def test_captions_say_probability_label_and_truth() -> None:
    assert _item(3, "normal").caption() == "patch3\np = 0.750: tumour, truth normal"
    assert _item(3, "normal").wrong and not _item(3, "tumour").wrong
    assert _item(1, None).caption() == "patch1\np = 0.250: tumour" and not _item(1, None).wrong
    long = Explained("x" * 40, _item(0, None).patch, _item(0, None).overlay, 0.5, "tumour")
    assert long.caption(width=10).startswith("x" * 9 + "…")


def test_grid_and_single_figures_are_written(tmp_path: Path) -> None:
    items = [_item(k, "tumour" if k % 2 else None) for k in range(5)]
    grid = plot_explanations(items, ncols=4, title="five")
    assert len(grid.subfigs) == 2 and len(grid.subfigs[1].subfigs) == 8  # title + 2 x 4 tiles
    for fig, name in ((grid, "grid.png"), (plot_explanation(items[0]), "one.png")):
        path = save_figure(fig, tmp_path / name)
        assert path.read_bytes().startswith(b"\x89PNG")
    assert save_figure(plot_explanations([]), tmp_path / "none.png").stat().st_size > 100


def test_report_image_sections(tmp_path: Path) -> None:
    write_html_report(
        tmp_path / "r.html",
        "t",
        {"n": 1},
        [],
        image_sections={"Error gallery": (["errors_fp.png"], "most <confident>")},
    )
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Error gallery</h2>" in page and "most &lt;confident&gt;" in page
    assert '<img src="errors_fp.png"' in page
