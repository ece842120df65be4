"""A slide's resolution (microns per pixel at level 0): one parser for every source.

A reader asks for the file's resolution only when the user gave none (``--mpp`` overrides the
metadata without reading it, so it rescues a slide whose tags are broken). Each source is
looked at in order of how specific it is (OME ``PhysicalSizeX``, an Aperio ``MPP``, OpenSlide's
``mpp-x``, TIFF resolution tags, an image's dpi); the first one present decides:

* absent everywhere: ``None`` (the caller asks for ``--mpp``);
* present but not a number, not finite, zero or negative, or in an unknown unit: a one-line
  ``DataError`` naming the file, the source and the value;
* a number outside ``[MIN_MPP, MAX_MPP]``: refused the same way. Finer than 0.05 um/px is no
  scanner (a 40x scan is about 0.25) and would make every tile a resampling of thousands of
  pixels; coarser than 50 um/px is a screen default (72 dpi is 353 um/px), not a scan.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from metastasis.errors import DataError

MIN_MPP = 0.05  # finer than this: no scanner, and every tile would be resampled from 10^4+ px
MAX_MPP = 50.0  # coarser than this (e.g. 72 dpi) is a screen default, not a scan
UNITS_IN_MICRONS = {
    "µm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0, "\u03bcm": 1.0,
    "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6,
}  # fmt: skip
GIVE_MPP = "give --mpp"


def plausible(mpp: float) -> bool:
    return math.isfinite(mpp) and MIN_MPP <= mpp <= MAX_MPP


def check_mpp_option(mpp: float | None) -> float | None:
    """``--mpp`` as given, or a one-line error when it is not a plausible scan resolution."""
    if mpp is not None and not plausible(float(mpp)):
        raise DataError(
            f"--mpp {mpp} is not a plausible resolution ({MIN_MPP:g} to {MAX_MPP:g} um/px)"
        )
    return mpp


def parse_mpp(path: Path, source: str, value: Any, microns_per_unit: float = 1.0) -> float:
    """``value`` (text or a number, in units of ``microns_per_unit`` microns) as microns per
    pixel, or a one-line ``DataError`` saying what is wrong with it."""
    try:
        number = float(str(value).strip()) * microns_per_unit
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise DataError(f"{path}: unusable resolution {source} = {_shown(value)}; {GIVE_MPP}")
    if not plausible(number):
        raise DataError(
            f"{path}: {source} = {_shown(value)} gives {number:.4g} um/px, not a plausible scan "
            f"resolution ({MIN_MPP:g} to {MAX_MPP:g} um/px); {GIVE_MPP}"
        )
    return number


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def tiff_mpp(path: Path, tif: Any, page: Any) -> float | None:
    """Level-0 microns per pixel of a TIFF (tifffile): OME metadata, an Aperio description,
    then the resolution tags."""
    if tif.is_ome and tif.ome_metadata:
        m = re.search(r'PhysicalSizeX="([^"]*)"', tif.ome_metadata)
        if m:
            u = re.search(r'PhysicalSizeXUnit="([^"]*)"', tif.ome_metadata)
            unit = u.group(1) if u else "µm"
            if unit not in UNITS_IN_MICRONS:
                raise DataError(f"{path}: unknown OME PhysicalSizeXUnit {unit!r}; {GIVE_MPP}")
            return parse_mpp(path, "OME PhysicalSizeX", m.group(1), UNITS_IN_MICRONS[unit])
    m = re.search(r"\|\s*MPP\s*=\s*([^|\r\n]*)", str(page.description or ""))
    if m:
        return parse_mpp(path, "Aperio MPP", m.group(1))
    return _resolution_tags(path, page.tags)


def _resolution_tags(path: Path, tags: Any) -> float | None:
    """XResolution with ResolutionUnit inch or centimetre; unit 1 (none) or absent: None."""
    if "XResolution" not in tags:
        return None
    unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2  # TIFF: inch
    per_unit = {2: 25_400.0, 3: 10_000.0}.get(unit) if isinstance(unit, int) else None
    if unit == 1:
        return None  # no absolute unit: an aspect ratio, not a resolution
    value = tags["XResolution"].value
    if per_unit is None:
        raise DataError(f"{path}: unusable resolution ResolutionUnit = {unit}; {GIVE_MPP}")
    if isinstance(value, tuple) and len(value) == 2:
        num, den = value
        pixels_per_unit = num / den if den else math.nan
    else:
        pixels_per_unit = _number(value)
    if not (math.isfinite(pixels_per_unit) and pixels_per_unit > 0):
        raise DataError(f"{path}: unusable resolution XResolution = {value}; {GIVE_MPP}")
    return parse_mpp(path, "XResolution", per_unit / pixels_per_unit)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def image_mpp(path: Path, info: dict[Any, Any]) -> float | None:
    """Microns per pixel from a plain image's dpi (PNG pHYs, JPEG JFIF), if it has one."""
    dpi = info.get("dpi")
    if not dpi:
        return None
    first = _number(dpi[0] if isinstance(dpi, (tuple, list)) else dpi)
    if not (math.isfinite(first) and first > 0):
        raise DataError(f"{path}: unusable resolution dpi = {dpi}; {GIVE_MPP}")
    return parse_mpp(path, "dpi", 25_400.0 / first)
