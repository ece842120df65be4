"""Tests for metastasis.reports.augment_preview: the PNG is written atomically and decodes, the
grid shows the originals and exactly the augmenter's draws, with titles and the centre box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from PIL import Image
from tests.helpers import patches

from metastasis.reports.augment_preview import (
    MAX_PATCHES,
    describe_spec,
    plot_augmentations,
    write_augmentation_preview,
)
from metastasis.transforms.augment import PRESETS, Augmenter, AugmentSpec, augment_spec


def _shown(ax: Axes) -> np.ndarray:
    (image,) = ax.get_images()
    return np.asarray(image.get_array())


def _grid(fig_axes: list[Axes], rows: int, cols: int) -> list[list[Axes]]:
    """The figure's axes as rows of columns, ordered by their position on the page."""
    assert len(fig_axes) == rows * cols
    by_row = sorted(fig_axes, key=lambda a: -a.get_position().y0)
    grid = [
        sorted(by_row[r * cols : (r + 1) * cols], key=lambda a: a.get_position().x0)
        for r in range(rows)
    ]
    for r in range(1, rows):  # rows really are below one another
        assert grid[r][0].get_position().y0 < grid[r - 1][0].get_position().y0
    return grid


def test_writes_a_png_atomically(tmp_path: Path) -> None:
    images, _ = patches(4, seed=1)
    out = tmp_path / "preview" / "augment.png"
    got = write_augmentation_preview(out, images, Augmenter(PRESETS["strong"]), seed=0)
    assert got == out and out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["augment.png"]  # no temporary files left
    with Image.open(out) as img:
        assert img.format == "PNG"
        img.load()
        width, height = img.size
    rows, cols = 4, 1 + 5
    assert 0.75 * cols / rows < width / height < 1.25 * cols / rows
    assert width >= cols * 96  # at least one screen pixel per patch pixel


def test_same_seed_same_png(tmp_path: Path) -> None:
    images, _ = patches(3, seed=2)
    aug = Augmenter(PRESETS["pathology"])
    a = write_augmentation_preview(tmp_path / "a.png", images, aug, seed=5).read_bytes()
    b = write_augmentation_preview(tmp_path / "b.png", images, aug, seed=5).read_bytes()
    c = write_augmentation_preview(tmp_path / "c.png", images, aug, seed=6).read_bytes()
    assert a == b and a != c


def test_grid_holds_originals_then_the_augmenters_draws() -> None:
    images, _ = patches(4, seed=3)
    aug = Augmenter(PRESETS["pathology"])
    fig = plot_augmentations(images, aug, n_views=3, generator=torch.Generator().manual_seed(7))
    grid = _grid(fig.axes, rows=4, cols=4)
    g = torch.Generator().manual_seed(7)
    expected = [aug(torch.from_numpy(images), g).numpy() for _ in range(3)]
    assert not np.array_equal(expected[0], images)  # the views are really augmented
    for r in range(4):
        np.testing.assert_array_equal(_shown(grid[r][0]), images[r])
        for k in range(3):
            np.testing.assert_array_equal(_shown(grid[r][k + 1]), expected[k][r])
    assert [ax.get_title() for ax in grid[0]] == [
        "original",
        "augmented 1",
        "augmented 2",
        "augmented 3",
    ]
    assert all(ax.get_title() == "" for row in grid[1:] for ax in row)
    assert all(not ax.axison for row in grid for ax in row)
    suptitle = fig.get_suptitle()
    assert "pathology" in suptitle and "hed_scale=0.05" in suptitle and "d4" in suptitle


def test_every_cell_outlines_the_labelled_centre() -> None:
    images, _ = patches(2, seed=4)
    fig = plot_augmentations(images, Augmenter(PRESETS["d4"]), n_views=2)
    for ax in fig.axes:
        boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert len(boxes) == 1
        (box,) = boxes
        assert box.get_xy() == (31.5, 31.5)  # pixel edges around pixels 32..63
        assert box.get_width() == 32 and box.get_height() == 32
        assert box.get_linestyle() == "--" and not box.get_fill()


def test_takes_tensors_and_caps_the_rows() -> None:
    images, _ = patches(MAX_PATCHES + 3, seed=5)
    fig = plot_augmentations(torch.from_numpy(images), Augmenter(PRESETS["flips"]), n_views=1)
    grid = _grid(fig.axes, rows=MAX_PATCHES, cols=2)
    np.testing.assert_array_equal(_shown(grid[-1][0]), images[MAX_PATCHES - 1])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 96, 96, 3), np.float32),
        np.zeros((2, 3, 96, 96), np.uint8),
        np.zeros((96, 96, 3), np.uint8),
        np.zeros((0, 96, 96, 3), np.uint8),
    ],
    ids=["float", "NCHW", "HWC", "empty"],
)
def test_rejects_other_inputs(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        plot_augmentations(bad, Augmenter(PRESETS["d4"]))


def test_rejects_no_views() -> None:
    images, _ = patches(1)
    with pytest.raises(ValueError, match="n_views"):
        plot_augmentations(images, Augmenter(PRESETS["d4"]), n_views=0)


def test_describe_spec_lists_what_acts() -> None:
    assert describe_spec(PRESETS["none"]) == "none: no augmentation"
    assert describe_spec(PRESETS["d4"]) == "d4: d4"
    assert describe_spec(AugmentSpec()) == "none: no augmentation"
    text = describe_spec(augment_spec("d4", {"hue": 0.1, "noise_p": 0.5}))
    assert text == "d4, hue=0.1"  # not a preset any more; noise_p without noise_std does nothing
    strong = describe_spec(PRESETS["strong"])
    assert strong.startswith("strong: d4, hed_scale=0.1")
    assert "affine_p=0.5" in strong and "noise_std=0.02" in strong and "flips" not in strong


def _row_texts(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_rows_say_their_class() -> None:
    images, _ = patches(4, seed=6)
    fig = plot_augmentations(images, Augmenter(PRESETS["d4"]), n_views=2, labels=[0, 0, 1, 1])
    grid = _grid(fig.axes, rows=4, cols=3)
    assert [_row_texts(row[0]) for row in grid] == [
        ["normal (0)"], ["normal (0)"], ["tumour (1)"], ["tumour (1)"],
    ]  # fmt: skip
    assert all(_row_texts(ax) == [] for row in grid for ax in row[1:])
    named = plot_augmentations(images[:1], Augmenter(PRESETS["d4"]), labels=[1],
                               class_names=("benign", "metastasis"))  # fmt: skip
    assert _row_texts(named.axes[0]) == ["metastasis (1)"]
    unlabelled = plot_augmentations(images, Augmenter(PRESETS["d4"]), n_views=1)
    assert all(_row_texts(ax) == [] for ax in unlabelled.axes)
    with pytest.raises(ValueError, match="3 labels for 4 patches"):
        plot_augmentations(images, Augmenter(PRESETS["d4"]), labels=[0, 1, 1])


def test_the_labelled_preview_is_written(tmp_path: Path) -> None:
    images, _ = patches(2, seed=7)
    out = write_augmentation_preview(
        tmp_path / "a.png", images, Augmenter(PRESETS["flips"]), labels=np.array([0, 1])
    )
    assert out.read_bytes().startswith(b"\x89PNG")
