"""Augmentation preview: a few patches next to what an :class:`Augmenter` makes of them.

One row per patch: the original, then ``n_views`` independent draws of the augmentation, each
with a faint dashed box around the centre 32x32 region that PCam's label refers to (so one can
see that the labelled tissue stays in the box). Given the patches' labels, each row says its
class at its left ("normal (0)", "tumour (1)"). Object-oriented matplotlib only (``Figure``,
never ``pyplot``): no global state, no display; :func:`write_augmentation_preview` saves it as a
PNG atomically.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from metastasis.reports.figures import save_figure
from metastasis.transforms.augment import PRESETS, Augmenter, AugmentSpec

__all__ = ["MAX_PATCHES", "describe_spec", "plot_augmentations", "write_augmentation_preview"]

MAX_PATCHES = 6  # rows of the preview
_CELL_INCHES = 1.3
_TITLE_INCHES = 0.3  # column titles
_LINE_INCHES = 0.17  # each line of the suptitle


def describe_spec(spec: AugmentSpec) -> str:
    """The settings that do something, e.g. ``"d4, hed_scale=0.05, brightness=0.1"``, preceded
    by the preset's name when ``spec`` is one of the presets."""
    parts = []
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if not value or not _matters(spec, f.name):
            continue
        parts.append(f.name if value is True else f"{f.name}={value:g}")
    summary = ", ".join(parts) or "no augmentation"
    names = [name for name, preset in PRESETS.items() if preset == spec]
    return f"{names[0]}: {summary}" if names else summary


def _matters(spec: AugmentSpec, name: str) -> bool:
    """Whether a non-zero setting has an effect (a probability with no strength has none)."""
    if name == "flips":
        return not spec.d4  # D4 includes the flips
    if name == "affine_p":
        return bool(spec.translate or spec.scale)
    if name in ("translate", "scale"):
        return bool(spec.affine_p)
    if name == "blur_sigma":
        return bool(spec.blur_p)
    if name in ("noise_p", "noise_std"):
        return bool(spec.noise_p and spec.noise_std)
    return True


def _as_batch(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 N x H x W x 3 images, got {x.dtype} {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("no images to preview")
    return x[:MAX_PATCHES].cpu()


def _row_labels(
    labels: Sequence[int] | np.ndarray | None, rows: int, class_names: Sequence[str]
) -> list[str]:
    """Each row's class in words, e.g. ``"tumour (1)"``; empty strings without labels."""
    if labels is None:
        return [""] * rows
    values = [int(v) for v in np.asarray(labels).reshape(-1)[:MAX_PATCHES]]
    if len(values) != rows:
        raise ValueError(f"{len(values)} labels for {rows} patches")
    return [
        f"{class_names[v]} ({v})" if 0 <= v < len(class_names) else f"label {v}" for v in values
    ]


def _outline_centre(ax: Axes, height: int, width: int) -> None:
    """A faint dashed box around the central third (PCam's labelled 32x32 of a 96x96 patch)."""
    h, w = height // 3, width // 3
    top, left = (height - h) // 2, (width - w) // 2
    box = Rectangle(
        (left - 0.5, top - 0.5),  # pixel edges, as imshow places pixel centres on integers
        w,
        h,
        fill=False,
        edgecolor="white",
        linestyle="--",
        linewidth=0.8,
        alpha=0.7,
    )
    ax.add_patch(box)


def plot_augmentations(
    images: np.ndarray | torch.Tensor,
    augmenter: Augmenter,
    n_views: int = 5,
    generator: torch.Generator | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    class_names: Sequence[str] = ("normal", "tumour"),
) -> Figure:
    """A grid: one row per patch (the first :data:`MAX_PATCHES` of ``images``, uint8 NHWC),
    the original in the first column, then ``n_views`` augmented versions. View ``k`` of every
    row comes from the ``k``-th call ``augmenter(batch, generator)``. ``labels`` (one per patch)
    name each row's class at its left, from ``class_names``."""
    if n_views < 1:
        raise ValueError(f"n_views must be at least 1, got {n_views}")
    x = _as_batch(images)
    row_labels = _row_labels(labels, x.shape[0], class_names)
    columns = [x] + [augmenter(x, generator).cpu() for _ in range(n_views)]
    titles = ["original"] + [f"augmented {k}" for k in range(1, n_views + 1)]
    rows, cols = x.shape[0], len(columns)
    # wrapped to the figure's width (about 14 characters of 9 pt text per column)
    heading = textwrap.wrap(f"Augmentation {describe_spec(augmenter.spec)}", width=14 * cols)
    height = _CELL_INCHES * rows + _TITLE_INCHES + _LINE_INCHES * len(heading)
    fig = Figure(figsize=(_CELL_INCHES * cols, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for c, (batch, title) in enumerate(zip(columns, titles)):
        arrays = batch.numpy()
        for r in range(rows):
            ax = axes[r, c]
            ax.imshow(arrays[r], interpolation="nearest")
            _outline_centre(ax, arrays.shape[1], arrays.shape[2])
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0 and row_labels[r]:
                ax.text(-0.06, 0.5, row_labels[r], transform=ax.transAxes, rotation=90,
                        ha="right", va="center", fontsize=8)  # fmt: skip
    fig.suptitle("\n".join(heading), fontsize=9)
    return fig


def write_augmentation_preview(
    path: str | os.PathLike[str],
    images: np.ndarray | torch.Tensor,
    augmenter: Augmenter,
    seed: int = 0,
    n_views: int = 5,
    labels: Sequence[int] | np.ndarray | None = None,
    class_names: Sequence[str] = ("normal", "tumour"),
) -> Path:
    """Save :func:`plot_augmentations` (draws seeded by ``seed``; rows named by ``labels``) as a
    PNG at ``path``, atomically, and return the path."""
    generator = torch.Generator().manual_seed(seed)
    fig = plot_augmentations(
        images,
        augmenter,
        n_views=n_views,
        generator=generator,
        labels=labels,
        class_names=class_names,
    )
    return save_figure(fig, path)
