"""Decode one image file into a validated 96x96 RGB uint8 array, or say what is wrong with it.

Kept free of torch so that cache-building worker processes start fast.

Every file is treated as hostile: only regular files are opened (a FIFO would block, a device
never ends), only a few plain raster formats are parsed (never PostScript, which Pillow hands to
Ghostscript), the size is checked from the header before any pixel is decoded, and nothing is
converted: a file that is not 8 bits per sample RGB is refused, never quietly reduced to it.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from metastasis.errors import first_line

PATCH_SIZE = 96
PCAM_MPP = 0.972  # microns per pixel of PCam / Kaggle patches (level 2 of 0.243 um/px scans)
PATCH_SHAPE = (PATCH_SIZE, PATCH_SIZE, 3)

# Problem kinds for single images, in the order `check` reports them.
UNREADABLE = "unreadable"
WRONG_SIZE = "wrong_size"
WRONG_MODE = "wrong_mode"

# The formats a patch is read from; any other content (whatever the file is named) is refused.
ACCEPTED_FORMATS = ("TIFF", "PNG", "JPEG", "BMP", "WEBP")
# How the decoders name 8-bit-per-sample RGB data; anything else (RGB;16B, BGR;15, ...) would be
# a conversion to 8 bits.
_EIGHT_BIT_RGB = frozenset({"RGB", "BGR", "RGBX", "BGRX", "XRGB", "XBGR"})
_EIGHT_BIT_PLANES = frozenset({"R", "G", "B"})  # TIFF with separate colour planes, one each
PREVIEW_MAX_PIXELS = 4096 * 4096
_TIFF_BITS_PER_SAMPLE = 258
_TIFF_SAMPLES_PER_PIXEL = 277
_TIFF_PLANAR_CONFIGURATION = 284
_TIFF_SAMPLE_FORMAT = 339
# JPEG start-of-frame markers: Huffman-coded (0xC0-0xC3, 0xC5-0xC7) or arithmetic-coded
# (0xC9-0xCB, 0xCD-0xCF); DHT holds Huffman tables, DAC arithmetic conditioning.
_SOF_HUFFMAN = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})
_SOF_ARITHMETIC = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_DHT, _DAC, _SOS, _EOI = 0xC4, 0xCC, 0xDA, 0xD9


def image_extensions() -> frozenset[str]:
    """Lower-case file extensions Pillow can open (".tif", ".png", ".jpg", ...).

    Wider than `ACCEPTED_FORMATS` on purpose: a file in a format that is not read is still
    listed, so that `check` names it instead of it being silently ignored.
    """
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def decode_file(path: Path) -> tuple[np.ndarray | None, str | None, str]:
    """Return ``(pixels, problem_kind, detail)``; pixels is None when the file cannot be used.

    The size is checked from the header before any pixel is decoded, so a huge image (a
    decompression bomb) is refused without allocating it. Never raises for a bad file.
    """
    try:
        st = os.stat(path)  # follows symbolic links: a loop or a dangling link fails here
    except OSError as exc:
        return None, UNREADABLE, exc.strerror or type(exc).__name__
    if not stat.S_ISREG(st.st_mode):
        return None, UNREADABLE, "not a regular file"
    if st.st_size == 0:
        return None, UNREADABLE, "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": the decode decides
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=ACCEPTED_FORMATS) as im:
                problem = header_problem(im)
                if problem is None and im.format == "JPEG":
                    problem = jpeg_frame_problem(path.read_bytes())
                if problem is not None:
                    return None, *problem
                im.load()
                arr = np.asarray(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        m = re.search(r"\d+ pixels", str(exc))
        size = m[0] if m else "too many pixels"
        return None, WRONG_SIZE, f"{size}, refused unread (a possible decompression bomb)"
    except UnidentifiedImageError:
        return None, UNREADABLE, f"not a {', '.join(ACCEPTED_FORMATS)} image (or corrupt)"
    except PermissionError as exc:
        return None, UNREADABLE, exc.strerror or "permission denied"
    except Exception as exc:  # any failure of any decoder on a hostile file: unusable
        return None, UNREADABLE, first_line(exc, with_type=True)
    if arr.dtype != np.uint8 or arr.shape != PATCH_SHAPE:
        return None, WRONG_MODE, f"decoded as {arr.shape} {arr.dtype}, expected {PATCH_SHAPE} uint8"
    return arr, None, ""


def preview_file(path: Path, side: int = PATCH_SIZE) -> np.ndarray | None:
    """An RGB thumbnail (at most ``side`` pixels a side) of any image file, for reports that show
    what `check` found; None when it cannot be shown safely.

    The guards of `decode_file` (a regular file, an accepted format, no decompression bomb) plus
    at most `PREVIEW_MAX_PIXELS` decoded, so a report never hangs, never renders PostScript and
    never decodes a huge image. Unlike `decode_file` it converts (greyscale, 16-bit, CMYK), so a
    wrong file can be seen; never use it for data.
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path, formats=ACCEPTED_FORMATS) as im:
                if im.width * im.height > PREVIEW_MAX_PIXELS:
                    return None
                im.draft("RGB", (side, side))
                im.thumbnail((side, side))
                return np.asarray(im.convert("RGB"))
    except Exception:  # as in decode_file: nothing to show
        return None


def header_problem(im: ImageFile.ImageFile, check_size: bool = True) -> tuple[str, str] | None:
    """Size (unless ``check_size`` is False: the caller resizes), mode and sample depth, from
    the header alone: ``(problem kind, detail)`` or None. Used for files and for uploads."""
    if check_size and im.size != (PATCH_SIZE, PATCH_SIZE):
        w, h = im.size
        return WRONG_SIZE, f"{w}x{h}, expected {PATCH_SIZE}x{PATCH_SIZE}"
    if im.mode != "RGB":
        return WRONG_MODE, f"mode {im.mode}, expected 8-bit RGB"
    planar = False
    if im.format == "TIFF":
        tags = getattr(im, "tag_v2", {})
        bits = _as_tuple(tags.get(_TIFF_BITS_PER_SAMPLE, 8))
        if any(b != 8 for b in bits):
            return WRONG_MODE, f"{max(bits)}-bit samples, expected 8-bit RGB"
        if any(f != 1 for f in _as_tuple(tags.get(_TIFF_SAMPLE_FORMAT, 1))):
            return WRONG_MODE, "signed or floating-point samples, expected 8-bit RGB"
        samples = tags.get(_TIFF_SAMPLES_PER_PIXEL, 3)
        if samples != 3:  # an extra sample would be dropped without a word
            return WRONG_MODE, f"{samples} samples per pixel (RGB + {samples - 3}), expected 3"
        planar = tags.get(_TIFF_PLANAR_CONFIGURATION, 1) == 2
    accepted = _EIGHT_BIT_RGB | _EIGHT_BIT_PLANES if planar else _EIGHT_BIT_RGB
    for tile in im.tile:
        rawmode = _rawmode(tile[3] if len(tile) > 3 else None)
        if rawmode is not None and rawmode not in accepted:
            depth = "16-bit samples" if ";16" in rawmode else "samples"
            return WRONG_MODE, f"{depth} stored as {rawmode}, expected 8-bit RGB"
    return None


def jpeg_frame_problem(data: bytes) -> tuple[str, str] | None:
    """A JPEG whose frame says one entropy coding while its tables say the other.

    libjpeg decodes such a file without an error, as noise: an arithmetic-coded frame (SOF9...)
    holding Huffman tables, or a Huffman frame holding arithmetic conditioning. Genuine
    arithmetic-coded JPEGs (no Huffman tables) decode exactly and are accepted. Frames of
    other than 8 bits per sample are refused as wrong_mode.
    """
    sof, precision, seen = None, 8, set()
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:  # entropy-coded data after a scan: jump to the next 0xFF
            i = data.find(b"\xff", i)
            if i < 0:
                break
            continue
        marker = data[i + 1]
        if marker == 0xFF or marker == 0x00 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 1 if marker == 0xFF else 2  # fill byte, stuffed zero, restart, TEM
            continue
        if marker == _EOI:
            break
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        seen.add(marker)
        if marker in _SOF_HUFFMAN or marker in _SOF_ARITHMETIC:
            sof, precision = marker, data[i + 4] if i + 4 < len(data) else 8
        i += 2 + length
    if sof is None:
        return None  # Pillow found a frame; nothing more to say
    if precision != 8:
        return WRONG_MODE, f"{precision}-bit JPEG samples, expected 8-bit RGB"
    if sof in _SOF_ARITHMETIC and _DHT in seen:
        return UNREADABLE, (
            f"JPEG frame SOF{sof - 0xC0} declares arithmetic coding but the file holds "
            "Huffman tables: it would decode as noise"
        )
    if sof in _SOF_HUFFMAN and _DAC in seen:
        return UNREADABLE, (
            f"JPEG frame SOF{sof - 0xC0} declares Huffman coding but the file holds "
            "arithmetic conditioning: it would decode as noise"
        )
    return None


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _rawmode(args: Any) -> str | None:
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def pixel_digest(arr: np.ndarray) -> str:
    """A 128-bit hash of the pixel bytes, used to find exact duplicate images."""
    return hashlib.blake2b(np.ascontiguousarray(arr).tobytes(), digest_size=16).hexdigest()
