"""Uploaded files -> validated 96x96 RGB uint8 patches, in memory, or one clear refusal.

Everything here works on bytes already held in memory: nothing is written to disk. Every upload
is treated as hostile, as `data.decode` treats files: only PNG, JPEG and TIFF are parsed, the
pixel size is checked from the header before any pixel is decoded (a decompression bomb is
refused unread), and the patch checks (96x96, 8 bits per sample RGB) are `data.decode`'s own.
A zip archive is opened in memory; its entry count, declared and actual uncompressed sizes,
compression ratios and names are checked before and while it is read.

A refusal is an `UploadError` with the HTTP status to answer and one line naming the file.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from metastasis.data.decode import (
    PATCH_SIZE,
    WRONG_SIZE,
    header_problem,  # the patch checks of `check` and the CLI, reused as they are
    jpeg_frame_problem,
)
from metastasis.errors import first_line

# What the service reads: a subset of data.decode.ACCEPTED_FORMATS.
SERVE_FORMATS = ("PNG", "JPEG", "TIFF")
ZIP_MAGIC = b"PK\x03\x04"


class UploadError(Exception):
    """An upload the service refuses: ``status`` is the HTTP status, the message one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one request may hold; the defaults suit 96x96 patches (a PNG patch is ~27 KB)."""

    max_upload_bytes: int = 32 * 1024**2  # the whole request body
    max_images: int = 256  # images per request, zip entries included
    max_image_pixels: int = 1024 * 1024  # width x height from the header (resize=true only)
    max_zip_bytes: int = 64 * 1024**2  # total uncompressed size of a zip's entries
    max_zip_ratio: float = 100.0  # uncompressed / compressed size of one zip entry


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its name (the prediction's id) and its bytes."""

    name: str
    data: bytes


def clean_name(name: str) -> str:
    """A file name fit to be an id and an error message: one line, at most 200 characters."""
    text = "".join(c if c.isprintable() else "?" for c in name).strip()
    return (text or "unnamed")[:200]


def expand_uploads(files: list[Upload], limits: Limits) -> list[Upload]:
    """The images of a request: plain files as they are, zip archives opened into their entries."""
    out: list[Upload] = []
    for f in files:
        if f.data.startswith(ZIP_MAGIC) or f.name.lower().endswith(".zip"):
            out.extend(zip_entries(f, limits, limits.max_images - len(out)))
        else:
            out.append(f)
        if len(out) > limits.max_images:
            raise UploadError(413, f"{f.name}: more than {limits.max_images} images in one request")
    if not out:
        raise UploadError(400, "no image files in the request (send multipart field 'files')")
    return out


def zip_entries(archive: Upload, limits: Limits, room: int) -> list[Upload]:
    """The files of a zip archive held in memory, checked against ``limits``; at most ``room``."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive.data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(400, f"{archive.name}: not a readable zip archive ({exc})") from None
    with zf:
        infos = [
            i for i in zf.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")
        ]
        if len(infos) > room:
            raise UploadError(
                413, f"{archive.name}: more than {limits.max_images} images in one request"
            )
        total = sum(i.file_size for i in infos)
        if total > limits.max_zip_bytes:
            raise UploadError(
                413,
                f"{archive.name}: {total} bytes uncompressed, more than the limit of "
                f"{limits.max_zip_bytes}",
            )
        entries = []
        for info in infos:
            _check_entry(archive.name, info, limits)
            entries.append(
                Upload(f"{archive.name}/{info.filename}", _read_entry(zf, info, archive))
            )
    return entries


def _check_entry(zip_name: str, info: zipfile.ZipInfo, limits: Limits) -> None:
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":"):
        raise UploadError(400, f"{zip_name}: entry {name!r} points outside the archive")
    if info.flag_bits & 0x1:
        raise UploadError(400, f"{zip_name}/{name}: encrypted zip entries are not read")
    ratio = info.file_size / max(info.compress_size, 1)
    if ratio > limits.max_zip_ratio:
        raise UploadError(
            413,
            f"{zip_name}/{name}: compressed {ratio:.0f}:1 (limit {limits.max_zip_ratio:g}:1), "
            "refused as a possible zip bomb",
        )


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: Upload) -> bytes:
    """The entry's bytes, never more than its header declares (a lying header is a bomb)."""
    try:
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise UploadError(400, f"{archive.name}/{info.filename}: unreadable ({exc})") from None
    if len(data) > info.file_size:
        raise UploadError(
            413, f"{archive.name}/{info.filename}: larger than its header says (a zip bomb)"
        )
    return data


def decode_patch(upload: Upload, limits: Limits, resize: bool = False) -> np.ndarray:
    """A 96x96x3 uint8 patch from an uploaded file, or `UploadError`.

    A patch of another size is refused (422) unless ``resize``; then it is resized to 96x96
    (bilinear, antialiased) once its size from the header is within ``limits.max_image_pixels``.
    """
    name = upload.name
    if not upload.data:
        raise UploadError(422, f"{name}: empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": the decode decides
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(upload.data), formats=SERVE_FORMATS)
        except UnidentifiedImageError:
            raise UploadError(
                415, f"{name}: not a {', '.join(SERVE_FORMATS)} image (or corrupt)"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            m = re.search(r"\d+ pixels", str(exc))
            raise UploadError(
                413,
                f"{name}: {m[0] if m else 'too many pixels'}, more than the limit of "
                f"{limits.max_image_pixels}; refused unread (a possible decompression bomb)",
            ) from None
        except Exception as exc:  # any failure of any decoder on a hostile file
            raise UploadError(
                422, f"{name}: unreadable image ({first_line(exc, with_type=True)})"
            ) from None
        with im:
            return _decode_open(name, im, upload.data, limits, resize)


def _decode_open(
    name: str, im: ImageFile.ImageFile, data: bytes, limits: Limits, resize: bool
) -> np.ndarray:
    w, h = im.size
    if w * h > limits.max_image_pixels:
        raise UploadError(
            413,
            f"{name}: {w}x{h} = {w * h} pixels, more than the limit of {limits.max_image_pixels}; "
            "refused unread (a possible decompression bomb)",
        )
    problem = header_problem(im, check_size=not resize)
    if problem is None and im.format == "JPEG":
        problem = jpeg_frame_problem(data)
    if problem is not None:
        kind, detail = problem
        hint = " (send resize=true to resize it)" if kind == WRONG_SIZE else ""
        raise UploadError(422, f"{name}: {detail}{hint}")
    try:
        im.load()
        pixels: Image.Image = im
        if im.size != (PATCH_SIZE, PATCH_SIZE):
            pixels = im.resize((PATCH_SIZE, PATCH_SIZE), Image.Resampling.BILINEAR)
        arr = np.asarray(pixels)
    except Exception as exc:  # truncated or corrupt pixel data
        raise UploadError(
            422, f"{name}: unreadable image ({first_line(exc, with_type=True)})"
        ) from None
    if arr.dtype != np.uint8 or arr.shape != (PATCH_SIZE, PATCH_SIZE, 3):
        raise UploadError(422, f"{name}: decoded as {arr.shape} {arr.dtype}, expected 8-bit RGB")
    return arr
