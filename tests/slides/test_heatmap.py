"""slides.heatmap: axes in mm, a scale bar in mm, a legend for the tissue and lesion outlines,
the category in the title (the figure's artists and labels, not its pixels)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection

from metastasis.slides.heatmap import heatmap_title, nice_length, slide_heatmap


def test_heatmap_reads_in_mm_with_legend_and_category() -> None:
    thumb = np.full((60, 80, 3), 230, np.uint8)
    tissue = np.zeros((60, 80), bool)
    tissue[10:50, 10:70] = True
    prob = np.full((6, 8), np.nan, np.float32)
    prob[1:5, 1:7] = 0.2
    prob[2:4, 3:5] = 0.9
    lesion = np.array([[3, 2], [5, 2], [5, 4], [3, 4], [3, 2]], float) * 1000.0  # level-0 px
    title = heatmap_title("node-7", "micro", 1, 0.97, 0.5)
    fig = slide_heatmap(thumb, 100.0, prob, (0.0, 0.0), 1000.0, tissue, [lesion],
                        mpp=0.5, title=title)  # fmt: skip
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x (mm)" and ax.get_ylabel() == "y (mm)"
    assert ax.get_xlim() == pytest.approx((0.0, 80 * 100 * 0.5 / 1000))  # 4 mm wide
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["tissue outline", "lesion outlines (1)"]
    assert "micro-metastasis" in ax.get_title() and "0.97 mm" in ax.get_title()
    bars = [a for a in ax.artists if a.get_gid() == "scale-bar"]
    assert len(bars) == 1 and "0.5 mm" in [t.get_text() for t in bars[0].findobj(
        lambda o: hasattr(o, "get_text"))]  # fmt: skip
    (outlines,) = [c for c in ax.collections if isinstance(c, LineCollection) and
                   c.get_segments() and len(c.get_segments()[0]) == 5]  # fmt: skip
    assert outlines.get_segments()[0].max() == pytest.approx(2.5)  # 5000 px * 0.5 um = 2.5 mm
    assert fig.axes[1].get_ylabel() == "probability of tumour"


@pytest.mark.parametrize(("span", "length"), [(4.0, 0.5), (10.0, 2.0), (0.93, 0.1), (55, 10)])
def test_scale_bar_lengths_are_round(span: float, length: float) -> None:
    assert nice_length(span) == pytest.approx(length)
