"""From a slide's probability map to the lesions worth reporting, and a score for the slide.

A tile above the threshold is not a lesion: a weak model scatters single false-positive tiles
over every slide. Between the map (rows x cols, NaN where nothing was classified) and the
lesions (``regions.find_lesions``) three steps, each a ``SlideOptions`` setting:

1. **smoothing**: a Gaussian of ``sigma`` tiles, normalised over the classified cells (a cell
   at the edge of the tissue is the weighted mean of its classified neighbours, never diluted
   by glass; unclassified cells stay NaN); ``sigma = 0`` leaves the map as it is;
2. **hysteresis**: a lesion is a 4-connected set of cells at or above the *grow* threshold
   holding at least one cell at or above the *seed* threshold (the seed is never below the
   grow threshold);
3. **minimum size**: lesions of fewer than ``min_tiles`` tiles are dropped, and with
   ``shuffles`` > 0 also lesions no larger than chance makes them on this slide
   (:func:`chance_min_tiles`: the slide's background tiles shuffled over its tissue ``shuffles``
   times, the same steps drawn on each; a lesion must be larger than 95% of the largest chance
   lesions). A weak model's false-positive tiles are denser on some slides than on others; a
   fixed size lets chance clusters through on the dense ones. On the evaluation slides
   (benchmarks/README.md, "Issue 23") this removed every false lesion, with both models, and
   no true one.

Sigma and sizes are in tiles (the model's patch), whatever the stride: the map has
``tile_cells`` = patch / stride cells across a tile (1 at stride 96; 2 at stride 48, 3 at
stride 32), so sigma is ``sigma * tile_cells`` cells and a lesion of ``min_tiles`` tiles holds
``min_tiles * tile_cells**2`` cells. Overlapping tiles see the same pixels, so neighbouring cells
of a map with ``tile_cells > 1`` are not independent: chance draws the background in blocks of
``2 * tile_cells`` cells a side (a block bootstrap), which keeps that correlation; drawn cell
by cell, chance clusters were far smaller than the real false ones (at stride 48 the defaults
then let 266 false lesions through on the 11 negative evaluation slides, against 0 at stride
96).

The raw probabilities are kept for everything else (``tiles.csv``, ``probability.npy``, a
lesion's mean and largest probability). With ``sigma 0``, seed = grow = the model's threshold
and ``min_tiles 1`` (``PostProcess.raw``) a lesion is what it was before: every connected set
of cells at or above the threshold.

The slide's score (for slide-level ROC-AUC, ``summary.json``'s ``slide_score``) is the largest
probability of a classified tile, on the raw map (``peak``, the default), the largest value of
the smoothed map (``max``) or the largest reported lesion's longest diameter in mm
(``diameter``, 0 without a lesion). ``peak`` is the default because it ranked the evaluation
slides best with both models measured (benchmarks/README.md, "Issue 23": slide ROC-AUC 0.922
and 0.916 against 0.870 and 0.890 for the map smoothed by 1 tile; every sigma from 0.5 to 2
ranked them worse): smoothing, which keeps single false tiles out of the lesions, also lowers
the peak of a small true lesion of a few tiles. Pure functions on arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from metastasis.errors import MetastasisError

SCORES = ("peak", "max", "diameter")
SCORE_TEXT = {
    "peak": "largest probability of a classified tile (the raw map, not smoothed)",
    "max": "largest value of the smoothed probability map (sigma {sigma:g} tiles) over the "
    "classified tissue",
    "diameter": "longest diameter (mm) of the largest reported lesion; 0 without a lesion",
}


@dataclass(frozen=True)
class PostProcess:
    """The post-processing of one run: what ``regions.find_lesions`` applies to a map."""

    sigma: float = 0.0  # Gaussian smoothing, tiles (0: none)
    seed: float = 0.5  # a lesion holds a smoothed cell at or above this...
    grow: float = 0.5  # ...and every 4-connected cell at or above this around it
    min_tiles: float = 1  # smaller lesions (tiles) are dropped
    score: str = "peak"
    shuffles: int = 0  # > 0: lesions no larger than chance makes them are dropped too
    tile_cells: float = 1.0  # map cells across one tile (patch / stride): sigma, sizes in tiles

    def __post_init__(self) -> None:
        if self.sigma < 0 or not np.isfinite(self.sigma):
            raise MetastasisError(f"lesion_sigma must be >= 0, got {self.sigma}")
        if not 0 <= self.grow <= self.seed <= 1:
            raise MetastasisError(f"lesion thresholds must satisfy 0 <= grow ({self.grow}) <= "
                                  f"seed ({self.seed}) <= 1")  # fmt: skip
        if self.min_tiles < 1:
            raise MetastasisError(f"min_lesion_tiles must be >= 1, got {self.min_tiles}")
        if not (self.tile_cells > 0 and np.isfinite(self.tile_cells)):
            raise MetastasisError(f"tile_cells must be > 0, got {self.tile_cells}")
        if self.shuffles < 0:
            raise MetastasisError(f"lesion_shuffles must be >= 0, got {self.shuffles}")
        if self.score not in SCORES:
            raise MetastasisError(f"unknown slide_score {self.score!r}; known: "
                                  f"{', '.join(SCORES)}")  # fmt: skip

    @classmethod
    def raw(cls, threshold: float, score: str = "peak") -> PostProcess:
        """Every connected set of cells at or above ``threshold`` is a lesion (no smoothing)."""
        return cls(0.0, threshold, threshold, 1, score)

    @classmethod
    def from_options(cls, options: Any, threshold: float, tile_cells: float = 1.0) -> PostProcess:
        """The post-processing that ``options`` (a ``SlideOptions``) asks for, with the
        model's ``threshold`` where the grow threshold is not given; the seed threshold is
        the grow threshold when not given, and raised to it when it is below it.
        ``tile_cells``: the map's cells across a tile (the model's patch / the stride)."""
        grow = threshold if options.lesion_grow is None else options.lesion_grow
        seed = grow if options.lesion_seed is None else max(options.lesion_seed, grow)
        return cls(options.lesion_sigma, seed, grow, options.min_lesion_tiles,
                   options.slide_score, options.lesion_shuffles, tile_cells)  # fmt: skip

    @property
    def sigma_cells(self) -> float:
        """The smoothing's sigma in cells of the map."""
        return self.sigma * self.tile_cells

    def cells(self, tiles: float) -> int:
        """Cells of the map in a lesion of ``tiles`` tiles (at least 1)."""
        return max(1, math.ceil(tiles * self.tile_cells**2 - 1e-9))

    @property
    def block(self) -> int:
        """Side, in cells, of the blocks chance draws the background in (1: cell by cell)."""
        f = round(self.tile_cells)
        return 1 if f <= 1 else 2 * f

    def describe(self) -> dict[str, Any]:
        """The settings as ``summary.json`` records them."""
        return asdict(self)

    def score_definition(self) -> str:
        return SCORE_TEXT[self.score].format(sigma=self.sigma)


def smooth(probability: np.ndarray, sigma: float) -> np.ndarray:
    """The map smoothed by a Gaussian of ``sigma`` cells, normalised over the classified
    (finite) cells; NaN stays NaN. ``sigma = 0``: a float32 copy."""
    p = np.asarray(probability, np.float32)
    if sigma <= 0:
        return p.copy()
    from scipy import ndimage

    known = np.isfinite(p)
    weight = ndimage.gaussian_filter(known.astype(np.float64), sigma, mode="constant")
    total = ndimage.gaussian_filter(np.where(known, p, 0.0).astype(np.float64), sigma,
                                    mode="constant")  # fmt: skip
    out = np.full(p.shape, np.nan, np.float32)
    out[known] = (total[known] / np.maximum(weight[known], 1e-12)).astype(np.float32)
    return out


def hysteresis(values: np.ndarray, seed: float, grow: float) -> np.ndarray:
    """The 4-connected sets of cells ``>= grow`` that hold a cell ``>= seed`` (NaN: never)."""
    from scipy import ndimage

    v = np.nan_to_num(np.asarray(values, np.float64), nan=-np.inf)
    candidates = v >= grow
    labels, n = ndimage.label(candidates)  # 4-connected, as the lesions' polygons
    if n == 0:
        return candidates
    seeded = np.unique(labels[(v >= seed) & candidates])
    keep = np.zeros(n + 1, bool)
    keep[seeded] = True
    keep[0] = False
    return keep[labels]


def drop_small(mask: np.ndarray, min_tiles: int) -> np.ndarray:
    """``mask`` without its 4-connected parts of fewer than ``min_tiles`` cells."""
    if min_tiles <= 1 or not mask.any():
        return mask
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_tiles
    keep[0] = False
    return keep[labels]


CHANCE_QUANTILE = 0.95  # a lesion must be larger than this share of the chance lesions
CHANCE_SEED = 0  # the shuffles are the same for the same map: a run redraws its own lesions
CHANCE_PASSES = 6  # the chance size's fixed point is reached in 2-4 on the evaluation slides


def _drawn(probability: np.ndarray, post: PostProcess, min_cells: int) -> np.ndarray:
    smoothed = smooth(probability, post.sigma_cells)
    return drop_small(hysteresis(smoothed, post.seed, post.grow), min_cells)


def chance_min_tiles(probability: np.ndarray, post: PostProcess) -> float:
    """The smallest lesion (tiles) this slide's map is not expected to form by chance, and
    never below ``post.min_tiles``. The background (the classified cells outside the lesions of
    the current size) is drawn with replacement over all classified cells ``post.shuffles``
    times (cell by cell, or in blocks where tiles overlap: ``PostProcess.block``), lesions are
    drawn from each shuffle as from the map, and the size is one cell more than the
    ``CHANCE_QUANTILE`` quantile of the largest chance lesion. It starts at ``post.min_tiles``
    and grows until it holds (at most ``CHANCE_PASSES`` times): each pass gives the background
    back the clusters chance explains. Starting small, a true lesion larger than chance never
    joins the background: a slide mostly taken by tumour keeps it. ``post.shuffles == 0``:
    ``post.min_tiles``."""
    return _chance_min_cells(probability, post) / post.tile_cells**2


def _chance_min_cells(probability: np.ndarray, post: PostProcess) -> int:
    k = floor = post.cells(post.min_tiles)
    if post.shuffles <= 0:
        return k
    p = np.asarray(probability, np.float32)
    known = np.isfinite(p)
    rng = np.random.default_rng(CHANCE_SEED)
    every = _drawn(p, post, 1)  # the map smoothed and thresholded once; each pass only sizes
    for _ in range(CHANCE_PASSES):
        background = known & ~drop_small(every, k)
        if not background.any():
            break
        largest = [_largest(draw, post) for draw in _chance_maps(p, known, background, post, rng)]
        bigger = max(floor, int(np.quantile(largest, CHANCE_QUANTILE)) + 1)
        if bigger <= k:
            break
        k = bigger
    return k


def _largest(p: np.ndarray, post: PostProcess) -> int:
    from scipy import ndimage

    labels, n = ndimage.label(_drawn(p, post, 1))
    return int(np.bincount(labels.ravel())[1:].max()) if n else 0


def _chance_maps(p: np.ndarray, known: np.ndarray, background: np.ndarray, post: PostProcess,
                 rng: np.random.Generator) -> Iterator[np.ndarray]:  # fmt: skip
    """``post.shuffles`` maps of the ``background`` cells' values drawn over the ``known``
    cells: cell by cell, or as whole ``post.block``-sided blocks of background (a block
    bootstrap: overlapping tiles' cells are correlated) where the slide has such blocks."""
    b = post.block
    pool = _whole_blocks(np.where(background, p, np.nan), b) if b > 1 else None
    shuffled = np.full(p.shape, np.nan, np.float32)  # one array, refilled for each draw
    if pool is None or len(pool) == 0:
        values = p[background]
        for _ in range(post.shuffles):
            shuffled[known] = rng.choice(values, int(known.sum()))
            yield shuffled
        return
    rows, cols = -(-p.shape[0] // b), -(-p.shape[1] // b)
    for _ in range(post.shuffles):
        drawn = pool[rng.integers(len(pool), size=rows * cols)]
        tiled = drawn.reshape(rows, cols, b, b).transpose(0, 2, 1, 3).reshape(rows * b, cols * b)
        shuffled[known] = tiled[: p.shape[0], : p.shape[1]][known]
        yield shuffled


def _whole_blocks(values: np.ndarray, b: int) -> np.ndarray:
    """The ``b`` x ``b`` blocks (aligned at the origin) of ``values`` with no NaN."""
    rows, cols = -(-values.shape[0] // b), -(-values.shape[1] // b)
    padded = np.full((rows * b, cols * b), np.nan, np.float32)
    padded[: values.shape[0], : values.shape[1]] = values
    blocks = padded.reshape(rows, b, cols, b).transpose(0, 2, 1, 3).reshape(-1, b, b)
    return blocks[np.isfinite(blocks).all(axis=(1, 2))]


def lesion_mask(probability: np.ndarray, post: PostProcess) -> np.ndarray:
    """The cells that belong to reported lesions: smoothing, hysteresis, minimum size (the
    larger of ``post.min_tiles`` and what chance reaches, :func:`chance_min_tiles`)."""
    return _drawn(probability, post, _chance_min_cells(probability, post))


def slide_score(
    probability: np.ndarray, largest_diameter_mm: float | None, post: PostProcess
) -> float | None:
    """The slide's score for slide-level ROC-AUC (``post.score``); None when nothing was
    classified."""
    if not np.isfinite(probability).any():
        return None
    if post.score == "diameter":
        return float(largest_diameter_mm or 0.0)
    if post.score == "peak":
        return float(np.nanmax(probability))
    return float(np.nanmax(smooth(probability, post.sigma_cells)))
