"""Bad input for slides: one line each, no traceback; a folder run goes on and lists it."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile
from tests.slides.conftest import mosaic, slide_at_level0, write_pyramid

from metastasis.cli import main
from metastasis.errors import DataError, MetastasisError
from metastasis.slides import run_slides
from metastasis.slides.readers import open_slide

NON_UTF8 = os.fsdecode(b"caf\xe9 slide.tif")


def _corrupt_one_tile(path: Path, level: int, index: int) -> None:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[level]
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00garbage" * (count // 8))


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory: pytest.TempPathFactory, blob_slide: Path) -> Path:
    d = tmp_path_factory.mktemp("bad")
    (d / "text.svs").write_text("this is not a slide\n")
    (d / "noise.tif").write_bytes(np.random.default_rng(0).bytes(5000))
    data = blob_slide.read_bytes()
    (d / "truncated.tif").write_bytes(data[: len(data) // 3])
    shutil.copy(blob_slide, d / "one_bad_tile.tif")
    _corrupt_one_tile(d / "one_bad_tile.tif", level=1, index=9)  # row 1, col 1 of 8 x 6 tiles
    shutil.copy(blob_slide, d / "absurd.tif")
    with tifffile.TiffFile(d / "absurd.tif", mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(5_000_000)
    tissue = np.ones((2, 2), bool)
    fine = slide_at_level0(mosaic(2, 2, tissue, np.zeros_like(tissue), seed=2), 4)
    write_pyramid(d / "fine_mpp.tif", fine, 0.243, levels=1)  # 4x finer than the model
    nothing = np.zeros((4, 5), bool)
    tinted = mosaic(4, 5, nothing, nothing) + np.array([0, -4, 3], np.int16)  # glass has a tint
    write_pyramid(d / "glass.tif", tinted.astype(np.uint8), 0.972, levels=1)
    shutil.copy(blob_slide, d / NON_UTF8)
    (d / os.fsdecode(b"\xff\xfe broken.tif")).write_bytes(b"II*\x00garbage")
    write_pyramid(d / "tiny.tif", mosaic(1, 1, tissue[:1, :1], nothing[:1, :1])[:60, :80], 0.972,
                  1, tile=16)  # fmt: skip
    return d


@pytest.fixture(scope="module")
def bad_run(
    bad_folder: Path, random_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.DataFrame, list[logging.LogRecord]]:
    out = tmp_path_factory.mktemp("bad_out")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("metastasis").addHandler(handler)
    try:
        table = run_slides([bad_folder], random_checkpoint, out, engine="torch", progress=False)
    finally:
        logging.getLogger("metastasis").removeHandler(handler)
    return out, table.set_index("slide"), records


def test_each_bad_slide_fails_in_one_line_and_the_good_ones_finish(
    bad_run: tuple[Path, pd.DataFrame, list[logging.LogRecord]],
) -> None:
    out, table, _ = bad_run
    failed = table[table["status"] == "failed"]
    assert set(failed.index) == {"text", "noise", "truncated", "absurd", "___broken"}
    for sid, row in failed.iterrows():
        assert "\n" not in row["reason"] and str(sid).strip("_") in row["reason"]
        assert "Traceback" not in row["reason"]
    assert "absurd dimensions 5000000" in failed.loc["absurd", "reason"]
    assert "truncated" in failed.loc["truncated", "reason"]
    ok = set(table[table["status"] == "ok"].index)
    assert ok == {"one_bad_tile", "fine_mpp", "glass", "caf__slide", "tiny"}
    csv = pd.read_csv(out / "slides.csv", encoding="utf-8")  # written as valid UTF-8
    assert len(csv) == 10 and "caf\ufffd slide.tif" in "".join(csv["path"])
    assert "\ufffd\ufffd broken.tif" in failed.loc["___broken", "reason"]


def test_a_tile_that_fails_to_decode_is_marked_counted_and_the_slide_goes_on(
    bad_run: tuple[Path, pd.DataFrame, list[logging.LogRecord]],
) -> None:
    out, table, _ = bad_run
    tiles = pd.read_csv(out / "one_bad_tile" / "tiles.csv")
    broken = tiles[tiles["status"] == "decode_error"]
    # level-1 tile 9 covers model pixels [128, 256) x [128, 256): grid tiles (1, 1), (1, 2),
    # (2, 1), (2, 2) at stride 96 overlap it
    assert set(zip(broken["row"], broken["col"])) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert broken["probability"].isna().all() and tiles["probability"].notna().sum() > 30
    summary = json.loads((out / "one_bad_tile" / "summary.json").read_text())
    assert summary["tiles_failed"] == 4 and any("decoded" in n for n in summary["notes"])
    assert table.loc["one_bad_tile", "tiles_failed"] == 4


def test_mpp_far_from_the_model_warns_and_resamples(
    bad_run: tuple[Path, pd.DataFrame, list[logging.LogRecord]],
) -> None:
    out, _, records = bad_run
    warned = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any("fine_mpp" in m and "4.0x finer" in m and "resampling" in m for m in warned)
    summary = json.loads((out / "fine_mpp" / "summary.json").read_text())
    assert summary["scale"] == pytest.approx(4.0) and summary["tiles_classified"] == 4


def test_an_all_glass_slide_or_one_smaller_than_a_tile_is_an_empty_result_with_a_note(
    bad_run: tuple[Path, pd.DataFrame, list[logging.LogRecord]],
) -> None:
    out, _, _ = bad_run
    tiny = json.loads((out / "tiny" / "summary.json").read_text())
    assert tiny["tiles_classified"] == 0 and "smaller than one 96 px tile" in tiny["notes"][0]
    assert (out / "tiny" / "heatmap.png").is_file()
    summary = json.loads((out / "glass" / "summary.json").read_text())
    assert summary["tiles_classified"] == 0 and summary["category"] == "negative"
    assert summary["notes"] == ["no tissue found: nothing classified"]
    assert json.loads((out / "glass" / "regions.geojson").read_text())["features"] == []


def test_the_cli_reports_failures_one_line_each_without_traceback(
    bad_folder: Path,
    bad_run: tuple[Path, pd.DataFrame, list[logging.LogRecord]],
    random_checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    out, _, _ = bad_run  # done slides are skipped; the failed ones are tried again
    code = main(["slides", str(bad_folder), "--checkpoint", str(random_checkpoint), "--out",
                 str(out), "--engine", "torch", "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1 and "10 slides (5 failed, 5 ok)" in captured.out
    assert "Traceback" not in captured.err
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 5 and all(r.name == "metastasis.slides.run" for r in errors)
    assert all("\n" not in r.getMessage() for r in errors)


def test_absurd_options_are_one_line_errors(
    blob_slide: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="plausible"):
        open_slide(blob_slide, mpp=-1)
    options: list[dict[str, Any]] = [
        {"shard": "3/2"}, {"shard": "x"}, {"stride": 0}, {"itc_mm": 5.0}, {"reader": "magic"},
        {"mpp": 0.0},
    ]  # fmt: skip
    for kwargs in options:
        with pytest.raises(MetastasisError) as err:
            run_slides([blob_slide], random_checkpoint, tmp_path / "o", **kwargs)
        assert "\n" not in str(err.value)
