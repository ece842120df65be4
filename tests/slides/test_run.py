"""slides.run and the slides command: a folder run end to end with a real (random-weight) model, its
outputs checked against the known layout, resume after a half-written slide, shards, pN."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import shape
from tests.browser import assert_sound, open_report

from metastasis.cli import main
from metastasis.inference.predictor import Predictor
from metastasis.slides import analyse_slide, run_slides
from metastasis.slides.classify import SlideClassifier
from metastasis.slides.postprocess import PostProcess, lesion_mask, slide_score


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, blob_slide: Path) -> Path:
    d = tmp_path_factory.mktemp("folder")
    shutil.copy(blob_slide, d / "a_blob.tif")
    (d / "b_notes.svs").write_text("not a slide\n")
    (d / "readme.txt").write_text("ignored: not a slide suffix\n")
    return d


@pytest.fixture(scope="module")
def done(
    folder: Path, random_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("out")
    table = run_slides(
        [folder],
        random_checkpoint,
        out,
        progress=False,
        geojson_tiles=True,
        block_tiles=3,
        fully_conv="on",
    )
    return out, table


def test_folder_run_table_lists_every_slide_and_the_failure_in_one_line(
    done: tuple[Path, pd.DataFrame],
) -> None:
    out, table = done
    csv = pd.read_csv(out / "slides.csv")
    assert list(csv["slide"]) == ["a_blob", "b_notes"] == list(table["slide"])
    ok, bad = csv.iloc[0], csv.iloc[1]
    assert ok["status"] == "ok" and ok["reader"] == "tifffile" and ok["level"] == 1
    assert bad["status"] == "failed" and "b_notes.svs" in bad["reason"]
    assert "\n" not in bad["reason"] and "Traceback" not in bad["reason"]
    assert not (out / "b_notes" / "summary.json").exists()


def test_slide_outputs_agree_with_each_other_and_with_the_layout(
    done: tuple[Path, pd.DataFrame],
    blob_layout: tuple[np.ndarray, np.ndarray],
    blob_image: np.ndarray,
    random_checkpoint: Path,
) -> None:
    out, _ = done
    d = out / "a_blob"
    summary: dict[str, Any] = json.loads((d / "summary.json").read_text())
    tissue, tumour = blob_layout
    assert summary["complete"] is True and summary["mode"] == "fully-convolutional"
    assert summary["level"] == 1 and summary["scale"] == pytest.approx(1.0)
    assert summary["mpp"] == pytest.approx(0.486) and "not a diagnosis" in str(summary)
    prob = np.load(d / "probability.npy")
    meta = json.loads((d / "probability.json").read_text())
    assert prob.shape == tuple(meta["shape"]) == tissue.shape  # stride 96: one tile per cell
    assert meta["step_level0"] == pytest.approx(192.0)  # 96 model px at 0.972 = 192 at 0.486
    tiles = pd.read_csv(d / "tiles.csv")
    assert set(tiles["status"]) == {"ok"} and len(tiles) == summary["tiles_classified"]
    assert np.array_equal(tiles["x"], tiles["col"] * 192) and (tiles["level"] == 1).all()
    classified = ~np.isnan(prob)
    assert not (classified & ~tissue).any()  # glass is never classified
    assert classified[tissue].mean() > 0.8
    assert np.allclose(prob[tiles["row"], tiles["col"]], tiles["probability"], atol=1e-6)
    # each cell's probability is the model's on the patch planted there (tumour or not)
    rows, cols = np.nonzero(classified)
    planted = np.stack([blob_image[r * 96 : r * 96 + 96, c * 96 : c * 96 + 96]
                        for r, c in zip(rows, cols)])  # fmt: skip
    expected = Predictor.from_checkpoint(random_checkpoint, device="cpu").predict_proba(planted)
    assert np.abs(prob[rows, cols] - expected).max() <= 1e-5
    assert tumour[classified].sum() == 9 - np.isnan(prob[tumour]).sum()
    gj = json.loads((d / "regions.geojson").read_text())
    assert gj["type"] == "FeatureCollection"
    lesions = [f for f in gj["features"] if f["properties"]["objectType"] == "annotation"]
    tile_features = [f for f in gj["features"] if f["properties"]["objectType"] == "tile"]
    assert len(lesions) == summary["lesions"] and len(tile_features) == len(tiles)
    for f in lesions:
        assert shape(f["geometry"]).is_valid
    area = sum(f["properties"]["measurements"]["area_mm2"] for f in lesions)
    assert area == pytest.approx(summary["tumour_area_mm2"], rel=1e-4)
    cell_mm2 = (192 * 0.486 / 1000) ** 2
    post = PostProcess(**summary["lesion_postprocess"])  # the lesions are the post-processed map's
    assert area == pytest.approx(lesion_mask(prob, post).sum() * cell_mm2, rel=1e-4)
    assert summary["slide_score"] == pytest.approx(slide_score(prob, None, post))
    assert summary["lesion_min_tiles"] >= post.min_tiles and post.shuffles > 0  # the default
    for name in ("heatmap.png", "tissue.png", "thumbnail.png"):
        assert (d / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tifffile_and_openslide_give_the_same_probabilities(
    blob_slide: Path, random_checkpoint: Path
) -> None:
    clf = SlideClassifier.from_checkpoint(
        random_checkpoint, stride=80, device="cpu", engine="torch", fully_conv="off"
    )
    a = analyse_slide(blob_slide, clf, reader="tifffile", progress=False)
    b = analyse_slide(blob_slide, clf, reader="openslide", progress=False)
    assert (a.reader, b.reader) == ("tifffile", "openslide")
    assert np.array_equal(np.isnan(a.probability), np.isnan(b.probability))
    assert np.nanmax(np.abs(a.probability - b.probability)) <= 1e-5
    assert a.probability.shape == (9, 11)  # (768 - 96) // 80 + 1, (960 - 96) // 80 + 1


def test_a_run_resumes_skipping_done_slides_and_redoing_half_written_ones(
    folder: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_slides([folder / "a_blob.tif"], random_checkpoint, out, progress=False, engine="torch")
    summary = out / "a_blob" / "summary.json"
    first = summary.stat().st_mtime_ns
    run_slides([folder / "a_blob.tif"], random_checkpoint, out, progress=False, engine="torch")
    assert summary.stat().st_mtime_ns == first  # complete: skipped
    summary.unlink()  # as if killed while writing: heatmap written, summary not yet
    (out / "a_blob" / ".tiles.csv.123.tmp").write_text("half")
    table = run_slides(
        [folder / "a_blob.tif"], random_checkpoint, out, progress=False, engine="torch"
    )
    assert summary.is_file() and list(table["status"]) == ["ok"]
    assert not (out / "a_blob" / ".tiles.csv.123.tmp").exists()


def test_shards_split_the_list_and_patients_get_pn_stages(
    folder: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    patients = tmp_path / "patients.csv"
    patients.write_text("slide,patient\na_blob.tif,p1\nb_notes,p2\n")
    table = run_slides(
        [folder], random_checkpoint, out, shard="1/2", patients=patients,
        progress=False, engine="torch",
    )  # fmt: skip
    assert list(table["status"]) == ["pending", "failed"]  # shard 1 of 2 holds b_notes only
    stages = pd.read_csv(out / "patients.csv")
    assert list(stages["stage"]) == ["unknown", "unknown"]
    table = run_slides([folder], random_checkpoint, out, shard="0/2",
                       patients=patients, progress=False, engine="torch")  # fmt: skip
    assert list(table["status"]) == ["ok", "failed"]
    stages = pd.read_csv(out / "patients.csv").set_index("patient")
    assert stages.loc["p1", "stage"] in {"pN0", "pN0(i+)", "pN1mi", "pN1"}
    assert stages.loc["p2", "stage"] == "unknown"
    html = (out / "report.html").read_text()
    assert "Research use only" in html and "a_blob/heatmap.png" in html and "pN stage" in html


def test_cli_runs_and_says_failures_in_one_line(
    folder: Path, random_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["slides", str(folder), "--checkpoint", str(random_checkpoint), "--out",
                 str(out), "--no-progress", "--stride", "48", "--fully-conv", "off"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1  # a slide failed
    assert "2 slides (1 failed, 1 ok)" in captured.out
    assert "Traceback" not in captured.err
    summary = json.loads((out / "a_blob" / "summary.json").read_text())
    assert summary["stride"] == 48 and summary["mode"] == "per-tile"
    code = main(["slides", str(tmp_path / "missing"), "--checkpoint", str(random_checkpoint),
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no such file" in err[0]


def test_report_renders_in_chromium(done: tuple[Path, pd.DataFrame], chromium: Any) -> None:
    out, _ = done
    opened = open_report(chromium, out / "report.html")
    assert_sound(opened)
    assert opened.rows["slides"] == 2 and len(opened.images) == 2


@pytest.mark.slow  # a second process start; the half-written test above covers the logic
def test_a_run_killed_with_sigkill_resumes(
    blob_slide: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    """`metastasis slides` killed (SIGKILL) once the first slide is done, then run again:
    the finished slide is kept, the one in progress is redone, nothing half-written counts."""
    import signal
    import subprocess
    import sys
    import time

    from tests.slides.conftest import mosaic, write_pyramid

    slides = tmp_path / "slides"
    slides.mkdir()
    tissue = np.ones((3, 3), bool)
    write_pyramid(slides / "a.tif", mosaic(3, 3, tissue, ~tissue, seed=6), 0.972, levels=1)
    shutil.copy(blob_slide, slides / "b.tif")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "metastasis", "slides", str(slides), "--checkpoint",
           str(random_checkpoint), "--out", str(out), "--engine", "torch",
           "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "a" / "summary.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    first = (out / "a" / "summary.json").stat().st_mtime_ns
    if proc.returncode == -signal.SIGKILL:
        assert not (out / "slides.csv").exists()  # killed before the table
    table = run_slides([slides], random_checkpoint, out, engine="torch", progress=False)
    assert list(table["status"]) == ["ok", "ok"]
    assert (out / "a" / "summary.json").stat().st_mtime_ns == first  # kept, not redone
    assert not list(out.glob("[ab]/.*.tmp"))  # no temporary file left in the slide folders


def test_a_stain_normalising_model_normalises_a_slide_with_one_estimate(tmp_path: Path) -> None:
    from tests.slides.conftest import mosaic, random_bundle, write_pyramid

    from metastasis.checkpoint import save_checkpoint
    from metastasis.transforms.presets import PCAM_MPP, SlidePreprocessing
    from metastasis.transforms.stain import StainReference, fit_source

    tumour = np.zeros((3, 4), bool)
    tumour[1, 1] = True
    image = mosaic(3, 4, np.ones((3, 4), bool), tumour, seed=3)
    write_pyramid(tmp_path / "s.tif", image, PCAM_MPP, levels=1)
    bundle = random_bundle()
    ref = StainReference("reinhard", mean=(-0.45, -0.07, 0.02), std=(0.31, 0.05, 0.014))
    bundle.preprocessing = replace(bundle.preprocessing, stain=ref)
    ckpt = save_checkpoint(tmp_path / "checkpoint.pt", bundle)
    tiles = image.reshape(3, 96, 4, 96, 3).swapaxes(1, 2).reshape(12, 96, 96, 3)
    seen: dict[bool, tuple[np.ndarray, np.ndarray]] = {}
    for per_slide in (True, False):
        out = tmp_path / f"out-{per_slide}"
        run_slides([tmp_path / "s.tif"], ckpt, out, progress=False, engine="torch",
                   stain_per_slide=per_slide)  # fmt: skip
        t = pd.read_csv(out / "s" / "tiles.csv").sort_values(["row", "col"])
        seen[per_slide] = (
            t["row"].to_numpy() * 4 + t["col"].to_numpy(),
            t["probability"].to_numpy(),
        )
    idx, got = seen[True]
    predictor = Predictor.from_checkpoint(ckpt, engine="torch")
    own = predictor.predict_proba(tiles[idx])  # each tile normalised with its own estimate
    np.testing.assert_allclose(seen[False][1], own, atol=1e-5)
    predictor.preprocessing = SlidePreprocessing.of(
        bundle.preprocessing, fit_source(ref, tiles[idx])
    )
    shared = predictor.predict_proba(tiles[idx])  # every tile with the slide's estimate
    np.testing.assert_allclose(got, shared, atol=1e-5)
    assert np.abs(shared - own).max() > 1e-4  # the two are told apart
    notes = json.loads((tmp_path / "out-True" / "s" / "summary.json").read_text())["notes"]
    assert any(f"one estimate from {len(idx)} of its tissue tiles" in n for n in notes)
