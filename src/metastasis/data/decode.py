"""Decode one image file into a validated 96x96 RGB uint8 array, or say what is wrong with it.

Kept free of torch so that cache-building worker processes start fast.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

PATCH_SIZE = 96
PATCH_SHAPE = (PATCH_SIZE, PATCH_SIZE, 3)

# Problem kinds for single images, in the order `check` reports them.
UNREADABLE = "unreadable"
WRONG_SIZE = "wrong_size"
WRONG_MODE = "wrong_mode"


def image_extensions() -> frozenset[str]:
    """Lower-case file extensions Pillow can open (".tif", ".png", ".jpg", ...)."""
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def decode_file(path: Path) -> tuple[np.ndarray | None, str | None, str]:
    """Return ``(pixels, problem_kind, detail)``; pixels is None when the file cannot be used.

    The size is checked from the header before any pixel is decoded, so a huge image (a
    decompression bomb) is refused without allocating it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.size != (PATCH_SIZE, PATCH_SIZE):
                    w, h = im.size
                    return None, WRONG_SIZE, f"{w}x{h}, expected {PATCH_SIZE}x{PATCH_SIZE}"
                if im.mode != "RGB":
                    return None, WRONG_MODE, f"mode {im.mode}, expected 8-bit RGB"
                im.load()
                arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, UNREADABLE, _one_line(exc)
    except Image.DecompressionBombWarning as exc:
        return None, UNREADABLE, _one_line(exc)
    if arr.shape != PATCH_SHAPE:
        return None, WRONG_MODE, f"decoded shape {arr.shape}, expected {PATCH_SHAPE}"
    return arr, None, ""


def pixel_digest(arr: np.ndarray) -> str:
    """A 128-bit hash of the pixel bytes, used to find exact duplicate images."""
    return hashlib.blake2b(np.ascontiguousarray(arr).tobytes(), digest_size=16).hexdigest()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
