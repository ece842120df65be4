"""Legends of the bar charts stay clear of the bars' count labels (drawn and measured)."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg

from metastasis.eda.figures import plot_class_balance


def test_the_class_balance_legend_covers_no_count() -> None:
    for counts in (
        {"train": {"0": 120, "1": 150}},  # the tallest bar on the right, under the old legend
        {"train": {"0": 10_000, "1": 9_170}, "valid": {"0": 1_500, "1": 1_407}},
        {"train": {"0": 5, "1": 9, "unlabelled": 2}, "test": {"unlabelled": 12}},
    ):
        fig = plot_class_balance(counts)
        FigureCanvasAgg(fig).draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        (ax,) = fig.axes
        legend = ax.get_legend()
        assert legend is not None
        box = legend.get_window_extent(renderer)
        labels = [t for t in ax.texts if t.get_text()]
        classes = {k for per_split in counts.values() for k in per_split}
        assert len(labels) == len(classes) * len(counts)  # one per bar, empty bars included
        for text in labels:
            assert not box.overlaps(text.get_window_extent(renderer)), text.get_text()
        assert box.x0 >= ax.get_window_extent(renderer).x1  # beside the axes
        assert box.x1 <= fig.bbox.x1  # and inside the figure
