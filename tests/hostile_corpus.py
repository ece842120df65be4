"""Hostile inputs, made at test time: what scanners, colleagues and bad copies produce.

Every writer is small and fast (the 20000x20000 decompression bomb is a 1-bit PNG streamed
through zlib: about 50 KB, written in a fraction of a second, never held in memory).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from tests.helpers import patches

BAD_UTF8_STEM = os.fsdecode(b"bad_utf8_\xff")


def rgb(seed: int = 0, width: int = 96) -> np.ndarray:
    """One synthetic 96 x ``width`` RGB patch."""
    return np.ascontiguousarray(patches(1, seed=seed)[0][0][:, :width])


def _save(path: Path, img: Image.Image, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def png_bytes(
    width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes]
) -> bytes:
    """A PNG from raw scanlines (each without its filter byte); ``rows`` repeats when shorter
    than ``height``, so a huge image of one colour streams through zlib without being built."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    comp = zlib.compressobj(9)
    parts = [comp.compress(b"\x00" + rows[y % len(rows)]) for y in range(height)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def tiff_bytes(pixels: np.ndarray, planar: bool = False, extra_samples: int | None = None) -> bytes:
    """A baseline little-endian TIFF of ``pixels`` (H x W x S, uint8 or uint16), the kinds
    Pillow cannot write: 16 bits per RGB sample, separate colour planes (PlanarConfiguration
    2, one strip per plane), or RGB plus an extra sample (ExtraSamples: 0 unspecified,
    2 unassociated alpha)."""
    h, w, samples = pixels.shape
    depth = pixels.dtype.itemsize * 8
    bits = struct.pack(f"<{samples}H", *([depth] * samples))
    le = pixels.astype(f"<u{pixels.dtype.itemsize}")
    planes = [le[..., c].tobytes() for c in range(samples)] if planar else [le.tobytes()]
    data = b"".join(planes)
    data_at = 8 + len(bits)
    offsets = [data_at + sum(len(q) for q in planes[:k]) for k in range(len(planes))]
    counts = [len(q) for q in planes]
    arrays = struct.pack(f"<{len(planes)}I", *offsets) + struct.pack(f"<{len(planes)}I", *counts)
    arrays_at = data_at + len(data)
    ifd_at = arrays_at + len(arrays)
    short, long_ = 3, 4
    many = len(planes) > 1
    tags = [
        (256, short, 1, w),  # ImageWidth
        (257, short, 1, h),  # ImageLength
        (258, short, samples, 8),  # BitsPerSample -> offset 8
        (259, short, 1, 1),  # no compression
        (262, short, 1, 2),  # RGB
        (273, long_, len(planes), arrays_at if many else data_at),  # StripOffsets
        (277, short, 1, samples),  # SamplesPerPixel
        (278, short, 1, h),  # RowsPerStrip
        (279, long_, len(planes), arrays_at + 4 * len(planes) if many else len(data)),
        (284, short, 1, 2 if planar else 1),  # PlanarConfiguration
    ]
    if extra_samples is not None:
        tags.append((338, short, 1, extra_samples))  # ExtraSamples
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        if kind == short and count == 1:
            ifd += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_at) + bits + data + arrays + ifd


# --- one writer per hostile image file ----------------------------------------------------------


def truncated_tif(path: Path) -> Path:
    _save(path, Image.fromarray(rgb(1)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def zero_byte(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def text_named_tif(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,label\nthis is a spreadsheet, not an image\n")
    return path


def decompression_bomb(path: Path, side: int = 20000) -> Path:
    """``side`` x ``side`` pixels of one colour (1-bit greyscale PNG, ~50 KB for 20000)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(side, side, 1, 0, [b"\x00" * ((side + 7) // 8)]))
    return path


def grey16_tif(path: Path) -> Path:
    return _save(path, Image.fromarray(rgb(2)[..., 0].astype(np.uint16) * 257))


def rgb16_tif(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiff_bytes(rgb(3).astype(np.uint16) * 257))
    return path


def rgb16_png(path: Path) -> Path:
    rows = [(row.astype(np.uint16) * 257).astype(">u2").tobytes() for row in rgb(4)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(96, 96, 16, 2, rows))
    return path


def cmyk_jpeg(path: Path) -> Path:
    return _save(path, Image.fromarray(rgb(5)).convert("CMYK"), quality=95)


def greyscale_png(path: Path) -> Path:
    return _save(path, Image.fromarray(rgb(6)).convert("L"))


def rgba_png(path: Path) -> Path:
    return _save(path, Image.fromarray(rgb(7)).convert("RGBA"))


def palette_png(path: Path) -> Path:
    return _save(path, Image.fromarray(rgb(8)).convert("P"))


def size_95x96(path: Path) -> Path:
    return _save(path, Image.fromarray(rgb(9, width=95)))


def planar_rgb_tif(path: Path) -> Path:
    """Valid 8-bit RGB in separate colour planes (PlanarConfiguration 2): to be used as is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiff_bytes(rgb(12), planar=True))
    return path


def rgb_extra_sample_tif(path: Path) -> Path:
    """RGB plus a fourth, unspecified sample (ExtraSamples 0), which Pillow would drop."""
    path.parent.mkdir(parents=True, exist_ok=True)
    px = rgb(13)
    path.write_bytes(tiff_bytes(np.dstack([px, px[..., :1]]), extra_samples=0))
    return path


def jpeg_arithmetic_frame_huffman_data(path: Path) -> Path:
    """A baseline JPEG whose frame marker says arithmetic coding (SOF9): libjpeg decodes its
    Huffman-coded data as noise, without an error."""
    _save(path, Image.fromarray(rgb(14)), quality=95)
    data = bytearray(path.read_bytes())
    sof0 = data.index(b"\xff\xc0")
    data[sof0 + 1] = 0xC9
    path.write_bytes(bytes(data))
    return path


def symlink_loop(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path.name, path)  # points at itself
    return path


def chmod_000(path: Path) -> Path:
    """A valid patch nobody may read (root still can: permissions do not bind root)."""
    _save(path, Image.fromarray(rgb(10)))
    os.chmod(path, 0)
    return path


def fifo(path: Path) -> Path:
    """A named pipe: opening it for reading would wait for a writer forever."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


EPS_TEXT = """%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 96 96
%%EndComments
/Helvetica findfont 12 scalefont setfont 10 40 moveto (hello) show
%%EOF
"""


def eps_named_tif(path: Path) -> Path:
    """PostScript: a program, which Pillow would hand to Ghostscript to render."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EPS_TEXT)
    return path


def bad_utf8_name(folder: Path) -> Path:
    """A valid patch whose file name is not UTF-8 (a zip made on another system)."""
    return _save(folder / f"{BAD_UTF8_STEM}.tif", Image.fromarray(rgb(11)))


# --- data sets ----------------------------------------------------------------------------------


def write_good(folder: Path, ids: list[str], seed: int = 0) -> None:
    imgs, _ = patches(len(ids), seed=seed)
    for i, name in enumerate(ids):
        _save(folder / f"{name}.tif", Image.fromarray(imgs[i]))


def write_labels(path: Path, rows: list[tuple[str, str]], header: str = "id,label") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (header + "\n" if header else "") + "".join(f"{i},{lab}\n" for i, lab in rows)
    path.write_text(text, encoding="utf-8")
    return path


def kaggle(root: Path, n_good: int = 6) -> Path:
    """A small clean Kaggle folder (train/ with labels, no test/)."""
    ids = [f"good{i}" for i in range(n_good)]
    write_good(root / "train", ids)
    write_labels(root / "train_labels.csv", [(i, str(k % 2)) for k, i in enumerate(ids)])
    return root


def write_h5(path: Path, name: str, data: np.ndarray | None = None, group: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if group:
            f.create_group(name)
        else:
            f.create_dataset(name, data=data)
    return path


def pcam(folder: Path, n: int = 4, split: str = "test") -> tuple[Path, Path]:
    """A valid PCam pair with ``n`` patches."""
    imgs, labels = patches(n, seed=1)
    x = write_h5(folder / f"camelyonpatch_level_2_split_{split}_x.h5", "x", imgs)
    y = write_h5(
        folder / f"camelyonpatch_level_2_split_{split}_y.h5",
        "y",
        labels.astype(np.uint8).reshape(n, 1, 1, 1),
    )
    return x, y


# --- HDF5 files that point elsewhere or declare what they do not store ---------------------------


def h5_external_link(path: Path, name: str) -> Path:
    """``name`` is an external link into another file beside it (which holds real patches)."""
    other = write_h5(path.with_name("elsewhere.h5"), name, patches(4, seed=1)[0])
    with h5py.File(path, "w") as f:
        f[name] = h5py.ExternalLink(other.name, f"/{name}")
    return path


def h5_soft_link(path: Path, name: str) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("real", data=patches(4, seed=1)[0])
        f[name] = h5py.SoftLink("/real")
    return path


def h5_external_storage_fifo(path: Path, name: str) -> Path:
    """``name`` keeps its bytes in a raw file beside it, which is then replaced by a FIFO:
    reading it would block forever."""
    raw = path.with_name("raw.bin")
    imgs = patches(4, seed=1)[0]
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=imgs, external=[(str(raw), 0, h5py.h5f.UNLIMITED)])
    raw.unlink()
    os.mkfifo(raw)
    return path


def h5_virtual(path: Path, name: str) -> Path:
    """``name`` is a virtual dataset mapping a dataset of another file."""
    imgs = patches(4, seed=1)[0]
    src = write_h5(path.with_name("source.h5"), name, imgs)
    layout = h5py.VirtualLayout(shape=imgs.shape, dtype=imgs.dtype)
    layout[:] = h5py.VirtualSource(src.name, name, shape=imgs.shape)
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset(name, layout)
    return path


def h5_declared_only(path: Path, name: str, n: int = 2_000_000, chunked: bool = True) -> Path:
    """N x 96 x 96 x 3 declared (55 GB for 2 million), nothing stored: a few KB on disk."""
    with h5py.File(path, "w") as f:
        f.create_dataset(
            name,
            shape=(n, 96, 96, 3),
            dtype=np.uint8,
            chunks=(1, 96, 96, 3) if chunked else None,
        )
    return path


# ---- whole slides -------------------------------------------------------------------------------


def svs_with_broken_tiles(
    path: Path,
    image: np.ndarray | None = None,
    broken: tuple[tuple[int, int], ...] = ((2, 14), (2, 15), (2, 50)),
    mpp: float = 0.25,
    levels: int = 4,
    tile: int = 128,
) -> Path:
    """An SVS as OpenSlide's Aperio driver reads it (``openslide.vendor`` ``aperio``) and
    tifffile as an SVS pyramid: JPEG tiles, the first page's description ``Aperio Image
    Library ... |MPP = <mpp>``, a stripped thumbnail as page 1, then each level half the last
    as a further tiled page (not marked reduced: tifffile's SVS series stops at those); the
    stored tiles ``broken`` ((level, tile index) pairs, row-major) overwritten with garbage.
    ``image``: level 0 (default: a 14 x 14 cell tissue mosaic with a tumour blob, 4 times finer
    than the model, 5376 px square).

    tifffile adds its JSON shape description as a second ImageDescription tag, which OpenSlide
    reads instead of the first: ``metadata=None`` leaves it out, or the file is generic TIFF.
    """
    import tifffile
    from tests.slides.conftest import mosaic, slide_at_level0

    if image is None:
        tissue = np.zeros((14, 14), bool)
        tissue[1:13, 1:13] = True
        tumour = np.zeros_like(tissue)
        tumour[4:7, 4:7] = True
        image = slide_at_level0(mosaic(14, 14, tissue, tumour, seed=3), 4)
    h, w = image.shape[:2]
    aperio = f"Aperio Image Library v12.0.15\n{w}x{h} ({tile}x{tile}) JPEG/RGB|MPP = {mpp}"
    path.parent.mkdir(parents=True, exist_ok=True)
    jpeg = {"compression": "jpeg", "photometric": "rgb", "metadata": None}
    with tifffile.TiffWriter(path) as tw:
        level = image
        for k in range(levels):
            tw.write(level, tile=(tile, tile), description=None if k else aperio, **jpeg)
            if k == 0:  # page 1: a stripped thumbnail, as in a scanner's SVS
                tw.write(np.asarray(Image.fromarray(image).reduce(32)), **jpeg)
            lh, lw = level.shape[:2]
            if min(lh, lw) // 2 < tile:
                break
            level = np.asarray(Image.fromarray(level).reduce(2))
    with tifffile.TiffFile(path) as tif:
        tiled = [page for page in tif.pages if page.is_tiled]  # the levels
        spans = [(tiled[lv].dataoffsets[i], tiled[lv].databytecounts[i]) for lv, i in broken]
    with open(path, "r+b") as fh:
        for offset, count in spans:
            fh.seek(offset)
            fh.write(b"\x00garbage" * (count // 8))
    return path


def one_colour_slide(
    path: Path, side: int, colour: tuple[int, int, int] = (240, 236, 244), mpp: float = 0.25
) -> Path:
    """A single-level ``side`` x ``side`` tiled TIFF of one colour (tinted glass), streamed
    tile by tile: a few MB on disk, gigapixels to read, no reduced level to read instead."""
    import tifffile

    tile = np.empty((256, 256, 3), np.uint8)
    tile[:] = colour
    count = (-(-side // 256)) ** 2
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path) as tw:
        tw.write((tile for _ in range(count)), shape=(side, side, 3), dtype=np.uint8,
                 tile=(256, 256), compression="zlib", photometric="rgb",
                 resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")  # fmt: skip
    return path


def declaring(path: Path, source: Path, width: int, height: int) -> Path:
    """A copy of the slide ``source`` whose level 0 declares ``width`` x ``height`` px (its
    tile table and pixels unchanged): a small file claiming to be immense."""
    import shutil

    import tifffile

    shutil.copy(source, path)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(width)
        tif.pages[0].tags["ImageLength"].overwrite(height)
    return path


def broken_resolution(path: Path, image: np.ndarray, kind: str) -> Path:
    """A tiled RGB TIFF whose resolution metadata is malformed: ``rational`` (XResolution
    1/0), ``aperio`` (``MPP = nan`` in an Aperio description), ``ome`` (PhysicalSizeX "NaN"),
    ``absurd`` (XResolution for 6e-6 um/px)."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    kw: dict[str, object] = {"tile": (128, 128), "photometric": "rgb"}
    if kind == "aperio":
        h, w = image.shape[:2]
        kw |= {"description": f"Aperio Image Library v12\n{w}x{h} |MPP = nan", "metadata": None}
    elif kind == "ome":
        kw |= {"metadata": {"PhysicalSizeX": "NaN", "PhysicalSizeXUnit": "µm"}}
    else:
        kw |= {"resolution": (1e4 / 6e-6, 1e4 / 6e-6), "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(path, image, ome=kind == "ome", **kw)  # type: ignore[arg-type]
    if kind == "rational":
        with tifffile.TiffFile(path, mode="r+b") as tif:
            tif.pages[0].tags["XResolution"].overwrite((1, 0))
    return path


def greyscale_slide(path: Path, image: np.ndarray, as_rgb: bool = False) -> Path:
    """The slide ``image`` in grey (0.299 R + 0.587 G + 0.114 B) as a tiled pyramid-less TIFF
    with resolution: one sample per pixel, or (``as_rgb``) three equal ones."""
    import tifffile

    grey = (image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round()
    pixels = grey.astype(np.uint8)
    if as_rgb:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, pixels, tile=(128, 128), photometric="rgb" if as_rgb else "minisblack",
                     resolution=(1e4 / 0.972,) * 2, resolutionunit="CENTIMETER")  # fmt: skip
    return path


def slide_named_entries(folder: Path) -> list[str]:
    """Entries named like slides that are not slide files: a symbolic-link loop, a dangling
    link, a FIFO and a folder; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    symlink_loop(folder / "loop.tif")
    (folder / "gone.svs").symlink_to(folder / "nowhere.svs")
    fifo(folder / "pipe.tif")
    (folder / "folder.tif").mkdir()
    return ["loop.tif", "gone.svs", "pipe.tif", "folder.tif"]
