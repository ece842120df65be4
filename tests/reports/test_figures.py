"""Tests for metastasis.reports.figures: the one figure writer."""

from __future__ import annotations

from pathlib import Path

from metastasis.metrics.plots import plot_roc
from metastasis.reports.figures import save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_save_figure_writes_png_atomically(tmp_path: Path) -> None:
    out = save_figure(plot_roc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), tmp_path / "sub" / "roc.png")
    assert out == tmp_path / "sub" / "roc.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 0
    assert [p.name for p in out.parent.iterdir()] == ["roc.png"]
