"""Whole slides that lie, hide or collide (issue 26): nothing deleted, memory bounded whatever a
file declares, broken resolutions rescued by --mpp, options checked first, no silent negative,
everything named like a slide accounted for. Files and folders are real, made here."""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests import hostile_corpus as hc
from tests.slides.conftest import mosaic, random_bundle, write_pyramid

from metastasis.checkpoint import save_checkpoint
from metastasis.cli import main
from metastasis.errors import DataError, MetastasisError, OutputError
from metastasis.slides import run_slides
from metastasis.slides.readers import open_slide
from metastasis.slides.staging import pn_stage


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# ---------------------------------------------------------------------------- 1. outputs


@pytest.fixture()
def mirax_like(tmp_path: Path, blob_slide: Path) -> Path:
    """A folder of slides as a MIRAX scan lays them out: ``scan.mrxs`` + its data ``scan/``."""
    d = tmp_path / "slides"
    d.mkdir()
    (d / "blob.tif").write_bytes(blob_slide.read_bytes())
    (d / "scan.mrxs").write_text("[GENERAL]\nSLIDE_VERSION = 01.02\n")
    (d / "scan").mkdir()
    (d / "scan" / "Data0000.dat").write_bytes(b"tiles of the scan" * 100)
    (d / "scan" / "Slidedat.ini").write_text("[GENERAL]\n")
    return d


def test_an_output_folder_that_is_or_holds_or_lies_in_an_input_is_refused_untouched(
    mirax_like: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    before = _tree(mirax_like)
    link = tmp_path / "link"
    link.symlink_to(mirax_like)
    cases = {
        mirax_like: "holds an input",  # slides DIR --out DIR
        link: "holds an input",  # the same folder under another name
        mirax_like / "scan": "is an input",  # MIRAX's data folder
        mirax_like / "scan" / "out": "lies inside",
    }
    for out, words in cases.items():
        with pytest.raises(OutputError, match=words) as err:
            run_slides([mirax_like], random_checkpoint, out, engine="torch", progress=False)
        assert "\n" not in str(err.value)
    assert _tree(mirax_like) == before and not (mirax_like / "slides.csv").exists()
    code = main(["slides", str(mirax_like), "--checkpoint", str(random_checkpoint), "--out",
                 str(mirax_like), "--no-progress"])  # fmt: skip
    assert code == 2 and _tree(mirax_like) == before


def test_a_slide_folder_holding_files_we_did_not_write_is_never_deleted(
    blob_slide: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / "blob").mkdir(parents=True)
    (out / "blob" / "my notes.txt").write_text("precious")
    with pytest.raises(OutputError, match=r"did not write \(my notes.txt\)"):
        run_slides([blob_slide], random_checkpoint, out, engine="torch", progress=False)
    assert (out / "blob" / "my notes.txt").read_text() == "precious"
    # a half-written folder of our own (a killed run) is cleared and redone
    (out / "blob" / "my notes.txt").unlink()
    (out / "blob" / "tiles.csv").write_text("half")
    (out / "blob" / ".heatmap.png.x1y2.tmp").write_bytes(b"")
    table = run_slides([blob_slide], random_checkpoint, out, engine="torch", progress=False)
    assert table.loc[0, "status"] == "ok" and (out / "blob" / "tiles.csv").read_text() != "half"
    assert not (out / "blob" / ".heatmap.png.x1y2.tmp").exists()


def test_a_patients_table_inside_the_output_folder_is_not_overwritten(
    blob_slide: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "patients.csv").write_text("slide,patient\nblob,p1\n")
    with pytest.raises(OutputError, match="is an input"):
        run_slides([blob_slide], random_checkpoint, out, patients=out / "patients.csv")
    assert (out / "patients.csv").read_text() == "slide,patient\nblob,p1\n"


# ---------------------------------------------------------------------------- 2. memory


def _capped(code: str, limit_mib: int) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh Python whose address space is capped (as ``ulimit -v`` does)."""
    cap = limit_mib * 2**20

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], preexec_fn=limit,
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip


def test_slides_declaring_any_size_are_read_in_bounded_memory(
    blob_slide: Path, tmp_path: Path
) -> None:
    """A 16,000 px single-level slide (its thumbnail reads 512 px blocks of 11,940 level px:
    850 MB at once before) and a small file declaring 10^6 x 10^6 px, under a 1 GiB cap."""
    big = hc.one_colour_slide(tmp_path / "big.tif", 16_000)
    liar = hc.declaring(tmp_path / "liar.tif", blob_slide, 1_000_000, 1_000_000)
    result = _capped(
        f"""
        from metastasis.errors import DataError
        from metastasis.slides.readers import open_slide
        from metastasis.slides.tissue import read_thumbnail
        with open_slide({str(big)!r}) as s:
            t = read_thumbnail(s, 0.972 * 96 / 16)
            print("thumbnail", t.pixels.shape, t.pixels.reshape(-1, 3).mean(0).round().tolist())
        try:
            open_slide({str(liar)!r})
        except DataError as e:
            print("refused", e)
        """,
        limit_mib=1024,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "thumbnail (685, 685, 3) [240.0, 236.0, 244.0]"
    assert lines[1].startswith("refused") and "declares 1000000 x 1000000 px" in lines[1]


# ---------------------------------------------------------------------------- 3. resolution


@pytest.mark.parametrize("kind", ["rational", "aperio", "ome", "absurd"])
def test_broken_resolution_metadata_is_one_line_and_mpp_rescues_the_slide(
    kind: str, blob_image: np.ndarray, random_checkpoint: Path, tmp_path: Path
) -> None:
    path = hc.broken_resolution(tmp_path / f"{kind}.tif", blob_image, kind)
    with pytest.raises(DataError, match=r"give --mpp$") as err:
        open_slide(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    with open_slide(path, mpp=0.972) as slide:
        assert slide.mpp == 0.972
    out = tmp_path / "out"
    failed = run_slides([path], random_checkpoint, out, engine="torch", progress=False)
    assert failed.loc[0, "status"] == "failed" and "give --mpp" in failed.loc[0, "reason"]
    rescued = run_slides([path], random_checkpoint, out, engine="torch", progress=False, mpp=0.972)
    assert rescued.loc[0, "status"] == "ok" and rescued.loc[0, "tiles_classified"] > 20


def test_resolutions_no_scanner_makes_are_refused(blob_slide: Path) -> None:
    for mpp in (0.04, 6e-6, 51.0, float("nan")):
        with pytest.raises(DataError, match="not a plausible resolution"):
            open_slide(blob_slide, mpp=mpp)
    with open_slide(blob_slide, mpp=0.05) as s:
        assert s.mpp == 0.05


# ---------------------------------------------------------------------------- 4. options


@pytest.mark.parametrize(
    ("csv", "words"),
    [
        ("slide;patient\nblob;p1\n", "needs the columns slide and patient"),
        ("slide,patient\nblob,\n", "row 2 has an empty slide or patient"),
        (b"slide,patient\n\xff\xfe,p1\n", "not a readable CSV"),
        ("slide,patient\nblob,p1\nblob,p2\n", "row 3: slide 'blob' is listed twice"),
    ],
)
def test_a_bad_patients_table_stops_the_run_before_any_slide(
    csv: str | bytes, words: str, blob_slide: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    table = tmp_path / "patients.csv"
    table.write_bytes(csv.encode() if isinstance(csv, str) else csv)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=words):
        run_slides([blob_slide], random_checkpoint, out, patients=table, progress=False)
    assert not out.exists()  # nothing analysed, nothing written


def test_bad_options_stop_before_any_slide_is_written(
    blob_slide: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    for kwargs in ({"engine": "magic"}, {"min_tissue": 2.0}, {"tissue_threshold": -0.1},
                   {"workers": 0}, {"batch_size": 0}, {"fully_conv": "maybe"}):  # fmt: skip
        with pytest.raises(MetastasisError) as err:
            run_slides([blob_slide], random_checkpoint, out, progress=False, **kwargs)
        assert "\n" not in str(err.value)
        assert not (out / "blob").exists()


# ---------------------------------------------------------------------------- 6. colour


@pytest.mark.parametrize("reader", ["auto", "openslide", "tifffile"])
@pytest.mark.parametrize("as_rgb", [False, True])
def test_a_slide_without_colour_is_refused_alike_by_every_reader_never_negative(
    reader: str, as_rgb: bool, blob_image: np.ndarray, random_checkpoint: Path, tmp_path: Path
) -> None:
    path = hc.greyscale_slide(tmp_path / "grey.tif", blob_image, as_rgb=as_rgb)
    table = run_slides([path], random_checkpoint, tmp_path / "out", engine="torch",
                       reader=reader, progress=False)  # fmt: skip
    row = table.iloc[0]
    assert row["status"] == "failed" and "no colour in any pixel" in row["reason"]
    assert pd.isna(row["category"])


def test_a_greyscale_png_is_refused_too(blob_image: np.ndarray, tmp_path: Path) -> None:
    from PIL import Image

    from metastasis.slides.tissue import read_thumbnail

    Image.fromarray(blob_image).convert("L").save(tmp_path / "grey.png")
    with open_slide(tmp_path / "grey.png", mpp=0.972) as s, pytest.raises(DataError) as err:
        read_thumbnail(s, 6.0)
    assert "no colour in any pixel" in str(err.value)


def test_a_slide_with_undecodable_tissue_and_no_tumour_found_is_unknown_not_negative(
    blob_slide: Path, tmp_path: Path
) -> None:
    import shutil

    import tifffile

    never = save_checkpoint(tmp_path / "never.pt", random_bundle(threshold=1.0))  # no lesion
    path = tmp_path / "broken.tif"
    shutil.copy(blob_slide, path)
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[1].dataoffsets[9], tif.pages[1].databytecounts[9]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00garbage" * (count // 8))
    table = run_slides([blob_slide, path], never, tmp_path / "out", engine="torch",
                       progress=False)  # fmt: skip
    assert table.set_index("slide")["category"].to_dict() == {"blob": "negative",
                                                               "broken": "unknown"}  # fmt: skip
    notes = json.loads((tmp_path / "out" / "broken" / "summary.json").read_text())["notes"]
    assert any("unknown, not negative" in n for n in notes)
    assert pn_stage(["negative", "unknown"]) == "unknown"


# ---------------------------------------------------------------------------- 7. listing


def test_everything_named_like_a_slide_in_a_folder_is_a_row_with_its_reason(
    blob_slide: Path, random_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "slides"
    names = hc.slide_named_entries(d)
    (d / "blob.tif").write_bytes(blob_slide.read_bytes())
    (d / "._blob.tif").write_bytes(b"AppleDouble")  # hidden: left out, and said
    with caplog.at_level(logging.WARNING, "metastasis"):
        table = run_slides([d], random_checkpoint, tmp_path / "out", engine="torch",
                           progress=False)  # fmt: skip
    assert any("1 hidden files named like slides left out (._blob.tif)" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    rows = table.set_index("slide")
    assert len(rows) == len(names) + 1 and rows.loc["blob", "status"] == "ok"
    reasons = {sid: rows.loc[sid, "reason"] for sid in ("loop", "gone", "pipe", "folder")}
    assert all(rows.loc[sid, "status"] == "failed" for sid in reasons)
    assert "symbolic-link loop" in reasons["loop"]
    assert "dangling symbolic link" in reasons["gone"]
    assert "not a regular file (a FIFO)" in reasons["pipe"]
    assert "a folder, not a file" in reasons["folder"]
    written = pd.read_csv(tmp_path / "out" / "slides.csv")
    assert len(written) == 5


def test_the_pieces_of_a_bounded_read_match_one_read(tmp_path: Path) -> None:
    """Reading in pieces (forced by a small bound) gives the pixels of one read, within the
    rounding of resampling at the pieces' edges."""
    import metastasis.slides.readers.resample as resample

    tissue = np.ones((4, 4), bool)
    img = mosaic(4, 4, tissue, np.zeros_like(tissue), seed=3)
    path = write_pyramid(tmp_path / "s.tif", img, 0.25, levels=1)
    with open_slide(path) as s:
        whole = resample.read_scaled(s, 0, 3.5, 7.25, 380.0, 360.0, 95, 90).pixels
        bound = resample.MAX_READ_SIDE
        try:
            resample.MAX_READ_SIDE = 64
            pieces = resample.read_scaled(s, 0, 3.5, 7.25, 380.0, 360.0, 95, 90).pixels
        finally:
            resample.MAX_READ_SIDE = bound
    assert pieces.shape == whole.shape
    assert np.abs(pieces.astype(int) - whole.astype(int)).mean() < 2.0
