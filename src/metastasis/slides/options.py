"""The options of a slides run, declared once (`Settings`) and checked before any slide is read.

``SlideOptions`` holds what is particular to whole slides; the classifier's own options
(engine, test-time augmentation, batch size, device: ``inference.options.InferenceOptions``)
and the checkpoint are checked by building the classifier, also before any slide. The
command's flags are derived from both declarations. Every problem is one line naming the
option.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationInfo, field_validator, model_validator

from metastasis.errors import DataError, MetastasisError, first_line
from metastasis.io import regular_file
from metastasis.settings import Settings, setting
from metastasis.slides.resolution import check_mpp_option
from metastasis.slides.staging import ITC_MM, MICRO_MM

if TYPE_CHECKING:  # pandas only where the patients' table is read
    import pandas as pd

MIN_TISSUE = 0.25  # tiles with less tissue than this (share of the tile) are not classified
Reader = Literal["auto", "openslide", "tifffile", "image"]
FullyConv = Literal["auto", "on", "off"]
Score = Literal["peak", "max", "diameter"]
# Lesion post-processing (``slides.postprocess``): chosen on 25 synthetic evaluation slides with
# two models of different strength (benchmarks/README.md, "Issue 23"); never on one slide. No
# seed above the grow threshold by default: on the smoothed map an absolute seed (0.9) dropped
# every lesion of a model whose smoothed peaks stay below it. The shuffles (a lesion larger than
# chance makes them on its slide) removed every false lesion of both models and no true one;
# with them, a floor of 2 tiles (a lone tile is never a lesion) found one lesion more than 4
# on the weaker model.
LESION_SIGMA = 1.0
MIN_LESION_TILES = 2
LESION_SHUFFLES = 50


class SlideOptions(Settings):
    """How slides are read, tiled, categorised and written (``metastasis slides``)."""

    stride: int = setting(96, "model pixels between tiles (96: side by side; 32: a dense map)",
                          ge=1)  # fmt: skip
    mpp: float | None = setting(
        None, "microns per pixel of level 0", default_text="the file's; needed if it has none"
    )
    reader: Reader = setting("auto", "slide reader", noun="reader")
    tissue_threshold: float | None = setting(
        None, "saturation above which a pixel is tissue", default_text="where the glass ends",
        ge=0, le=1,
    )  # fmt: skip
    min_tissue: float = setting(MIN_TISSUE, "classify tiles with at least this share of tissue",
                                ge=0, le=1)  # fmt: skip
    itc_mm: float = setting(ITC_MM, "largest ITC diameter, mm", gt=0)
    micro_mm: float = setting(MICRO_MM, "largest micro-metastasis diameter, mm", gt=0)
    lesion_sigma: float = setting(
        LESION_SIGMA,
        "smooth the probability map before outlining lesions: Gaussian sigma in tiles (the "
        "model's patch, at any stride; 0: none)",
        ge=0,
        le=50,
    )
    stain_per_slide: bool = setting(
        True,
        "with a stain-normalising model: one stain estimate from up to 64 of the slide's "
        "tissue tiles normalises all its tiles (off: each tile its own estimate)",
    )
    lesion_seed: float | None = setting(
        None,
        "a lesion needs a tile of the smoothed map at or "
        "above this (hysteresis; never below the grow threshold)",
        default_text="the grow threshold",
        ge=0,
        le=1,
    )
    lesion_grow: float | None = setting(
        None,
        "a lesion holds the connected tiles of the smoothed map at or above this",
        default_text="the model's threshold",
        ge=0,
        le=1,
    )
    min_lesion_tiles: int = setting(
        MIN_LESION_TILES,
        "report lesions of at least this area in tiles (the model's patch; at "
        "stride 48 a tile is 2 x 2 cells of the map)",
        ge=1,
    )
    lesion_shuffles: int = setting(
        LESION_SHUFFLES,
        "also drop lesions no larger than chance makes them on this slide: its background "
        "tiles shuffled this many times, in blocks where tiles overlap (0: off)",
        ge=0,
        le=1000,
    )
    slide_score: Score = setting(
        "peak",
        "the slide's score for slide-level AUC: the largest tile probability (peak), the "
        "smoothed map's max, or the largest lesion's diameter",
    )
    fully_conv: FullyConv = setting("auto", "fully convolutional pass where the model allows it")
    workers: int | None = setting(None, "reading threads", default_text="1 on a CPU, 4 on a GPU",
                                  ge=1)  # fmt: skip
    block_tiles: int | None = setting(None, "tiles per block side", default_text="about 640 px",
                                      ge=1)  # fmt: skip
    geojson_tiles: bool = setting(False, "also one GeoJSON feature per tile")
    shard: str | None = setting(
        None, "this machine's share: slides (embed: chunks of patches) I, I+N, ... of the sorted "
        "list (I from 0)", default_text="all of them", metavar="I/N")  # fmt: skip
    patients: str | None = setting(None, "CSV with columns slide,patient: pN stage per patient",
                                   metavar="CSV")  # fmt: skip
    resume: bool = setting(True, "skip slides already done")

    @field_validator("mpp")
    @classmethod
    def _plausible_mpp(cls, value: float | None) -> float | None:
        try:
            return check_mpp_option(value)
        except DataError as err:
            raise ValueError(str(err)) from None

    @field_validator("shard")
    @classmethod
    def _shard_form(cls, value: str | None) -> str | None:
        if value is not None:
            parse_shard(value)
        return value

    @model_validator(mode="after")
    def _cutoffs_in_order(self, info: ValidationInfo) -> SlideOptions:
        # After-validators run outside the base class's wrap: this one words its own line.
        if not self.itc_mm < self.micro_mm:
            source = (info.context or {}).get("source", "SlideOptions")
            raise MetastasisError(f"{source}: cut-offs must satisfy itc_mm ({self.itc_mm}) < "
                                  f"micro_mm ({self.micro_mm})")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _thresholds_in_order(self, info: ValidationInfo) -> SlideOptions:
        seed, grow = self.lesion_seed, self.lesion_grow
        if seed is not None and grow is not None and grow > seed:
            source = (info.context or {}).get("source", "SlideOptions")
            raise MetastasisError(
                f"{source}: lesion thresholds must satisfy lesion_grow "
                f"({self.lesion_grow}) <= lesion_seed ({self.lesion_seed})"
            )
        return self

    @property
    def shard_index(self) -> tuple[int, int]:
        return parse_shard(self.shard)


NAMES = tuple(SlideOptions.model_fields)


def slide_options(values: dict[str, Any]) -> SlideOptions:
    """``values`` as checked options; ``None`` values take the defaults."""
    given = {k: os.fspath(v) if isinstance(v, os.PathLike) else v
             for k, v in values.items() if v is not None}  # fmt: skip
    if isinstance(given.get("shard"), tuple):
        given["shard"] = "{}/{}".format(*given["shard"])
    return SlideOptions.model_validate(given, context={"source": "options"})


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    if isinstance(shard, tuple):
        i, n = shard
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise MetastasisError(f"--shard must be I/N (e.g. 0/4), got {shard!r}")
        i, n = int(m.group(1)), int(m.group(2))
    if not 0 <= i < n:
        raise MetastasisError(f"--shard I/N needs 0 <= I < N, got {i}/{n}")
    return i, n


def read_patients(path: str | Path) -> pd.DataFrame:
    """The ``--patients`` CSV (columns ``slide`` and ``patient``, as text), or one line saying
    what is wrong with it: read before any slide is analysed."""
    import pandas as pd

    p = Path(path)
    regular_file(p)
    try:
        links = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not a readable CSV ({first_line(exc, with_type=True)})") from None
    links.columns = [str(c).strip() for c in links.columns]
    missing = {"slide", "patient"} - set(links.columns)
    if missing:
        raise DataError(f"{p}: needs the columns slide and patient (missing: "
                        f"{', '.join(sorted(missing))})")  # fmt: skip
    links = links[["slide", "patient"]].apply(lambda col: col.str.strip())
    blank = links.index[(links["slide"] == "") | (links["patient"] == "")]
    if len(blank):
        raise DataError(f"{p}: row {int(blank[0]) + 2} has an empty slide or patient")
    twice = links.index[links["slide"].duplicated()]
    if len(twice):  # one slide is one lymph node, of one patient
        raise DataError(f"{p}: row {int(twice[0]) + 2}: slide {links.loc[twice[0], 'slide']!r} "
                        "is listed twice")  # fmt: skip
    return links
