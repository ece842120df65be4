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
3. **minimum size**: lesions of fewer than ``min_tiles`` cells are dropped, and with
   ``shuffles`` > 0 also lesions no larger than chance makes them on this slide
   (:func:`chance_min_tiles`: the slide's background tiles shuffled over its tissue ``shuffles``
   times, the same steps drawn on each; a lesion must be larger than 95% of the largest chance
   lesions). A weak model's false-positive tiles are denser on some slides than on others; a
   fixed size lets chance clusters through on the dense ones. On the evaluation slides
   (benchmarks/README.md, "Issue 23") this removed every false lesion, with both models, and
   no true one.

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
    min_tiles: int = 1  # smaller lesions are dropped
    score: str = "peak"
    shuffles: int = 0  # > 0: lesions no larger than chance makes them are dropped too

    def __post_init__(self) -> None:
        if self.sigma < 0 or not np.isfinite(self.sigma):
            raise MetastasisError(f"lesion_sigma must be >= 0, got {self.sigma}")
        if not 0 <= self.grow <= self.seed <= 1:
            raise MetastasisError(f"lesion thresholds must satisfy 0 <= grow ({self.grow}) <= "
                                  f"seed ({self.seed}) <= 1")  # fmt: skip
        if self.min_tiles < 1:
            raise MetastasisError(f"min_lesion_tiles must be >= 1, got {self.min_tiles}")
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
    def from_options(cls, options: Any, threshold: float) -> PostProcess:
        """The post-processing that ``options`` (a ``SlideOptions``) asks for, with the
        model's ``threshold`` where the grow threshold is not given; the seed threshold is
        the grow threshold when not given, and raised to it when it is below it."""
        grow = threshold if options.lesion_grow is None else options.lesion_grow
        seed = grow if options.lesion_seed is None else max(options.lesion_seed, grow)
        return cls(options.lesion_sigma, seed, grow, options.min_lesion_tiles,
                   options.slide_score, options.lesion_shuffles)  # fmt: skip

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


def _drawn(probability: np.ndarray, post: PostProcess, min_tiles: int) -> np.ndarray:
    smoothed = smooth(probability, post.sigma)
    return drop_small(hysteresis(smoothed, post.seed, post.grow), min_tiles)


def chance_min_tiles(probability: np.ndarray, post: PostProcess) -> int:
    """The smallest lesion (tiles) this slide's map is not expected to form by chance, and
    never below ``post.min_tiles``. The background (the classified cells outside the lesions of
    the current size) is drawn with replacement over all classified cells ``post.shuffles``
    times, lesions are drawn from each shuffle as from the map, and the size is one more than
    the ``CHANCE_QUANTILE`` quantile of the largest chance lesion. It starts at
    ``post.min_tiles`` and grows until it holds (at most ``CHANCE_PASSES`` times): each pass
    gives the background back the clusters chance explains. Starting small, a true lesion
    larger than chance never joins the background: a slide mostly taken by tumour keeps it.
    ``post.shuffles == 0``: ``post.min_tiles``."""
    k = post.min_tiles
    if post.shuffles <= 0:
        return k
    p = np.asarray(probability, np.float32)
    known = np.isfinite(p)
    rng = np.random.default_rng(CHANCE_SEED)
    every = _drawn(p, post, 1)  # the map smoothed and thresholded once; each pass only sizes
    for _ in range(CHANCE_PASSES):
        background = p[known & ~drop_small(every, k)]
        if background.size == 0:
            break
        bigger = _chance_size(p, known, background, post, rng)
        if bigger <= k:
            break
        k = bigger
    return k


def _chance_size(p: np.ndarray, known: np.ndarray, background: np.ndarray, post: PostProcess,
                 rng: np.random.Generator) -> int:  # fmt: skip
    from scipy import ndimage

    largest = []
    shuffled = np.full(p.shape, np.nan, np.float32)
    for _ in range(post.shuffles):
        shuffled[known] = rng.choice(background, int(known.sum()))
        labels, n = ndimage.label(_drawn(shuffled, post, 1))
        largest.append(int(np.bincount(labels.ravel())[1:].max()) if n else 0)
    return max(post.min_tiles, int(np.quantile(largest, CHANCE_QUANTILE)) + 1)


def lesion_mask(probability: np.ndarray, post: PostProcess) -> np.ndarray:
    """The cells that belong to reported lesions: smoothing, hysteresis, minimum size (the
    larger of ``post.min_tiles`` and what chance reaches, :func:`chance_min_tiles`)."""
    return _drawn(probability, post, chance_min_tiles(probability, post))


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
    return float(np.nanmax(smooth(probability, post.sigma)))
