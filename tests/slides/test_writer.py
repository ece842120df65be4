"""slides.run's background writer and slides.outputs' fast tiles.csv: a slide whose outputs
cannot be written fails alone, named, with nothing half-written left; tiles.csv's bytes are
pandas' ``to_csv``'s."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from metastasis.slides import outputs, run
from metastasis.slides.run import run_slides


def test_a_slide_whose_outputs_fail_is_that_slides_failure_and_leaves_nothing_half_written(
    blob_slide: Path, random_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("a.tif", "b.tif"):
        shutil.copy(blob_slide, slides / name)
    real = outputs.write_slide_outputs

    def write(result: outputs.SlideResult, folder: Path, geojson_tiles: bool = False) -> object:
        if result.slide_id == "a":  # a partial write, then the failure (a full disk), while
            folder.mkdir(exist_ok=True)  # slide b is being analysed
            (folder / "tiles.csv").write_text("row,col\n")
            raise OSError(28, "No space left on device")
        return real(result, folder, geojson_tiles)

    monkeypatch.setattr(run, "write_slide_outputs", write)
    out = tmp_path / "out"
    table = run_slides(slides, random_checkpoint, out, progress=False, engine="torch",
                       block_tiles=4)  # fmt: skip
    assert list(table["status"]) == ["failed", "ok"]
    assert "No space left on device" in table["reason"][0]
    assert sorted(p.name for p in (out / "a").iterdir()) == ["failed.json"]
    assert json.loads((out / "a" / "failed.json").read_text())["slide"] == "a"
    assert (out / "b" / "summary.json").is_file() and (out / "b" / "heatmap.png").is_file()
    shown = np.asarray(Image.open(out / "b" / "thumbnail.png"))
    assert max(shown.shape[:2]) <= outputs.DISPLAY_PX


def test_tiles_csv_is_written_as_pandas_writes_it() -> None:
    table = pd.DataFrame(
        {
            "row": np.array([0, 3, 7]), "col": np.array([1, 2, 9]),
            "x": np.array([0, 288, 10**6]), "y": np.array([96, 192, 5]), "level": 1,
            "tissue_fraction": np.round(np.array([1.0, 0.12345, 0.5]), 4),
            "probability": np.array([0.25, np.nan, 0.9999996], np.float32),
            "status": ["ok", "decode_error", "ok"],
        }
    )  # fmt: skip
    fast = outputs.csv_text(table)
    assert fast == outputs.csv_text(table, fast=False)
    assert fast == table.to_csv(index=False, float_format="%.6f").encode()
    assert fast.decode().splitlines()[2] == "3,2,288,192,1,0.123400,,decode_error"
