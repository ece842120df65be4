"""Tests for metastasis.eda.report: a folder with planted problems, each found in its section,
numbers checked against independent counts, and the page rendered in a real browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from skimage.filters import gaussian
from tests.browser import assert_sound, open_report
from tests.helpers import patches, write_image

from metastasis.data import synthetic
from metastasis.eda.page import render_html
from metastasis.eda.report import write_eda_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 synthetic patches in train/{0,1} plus one of each problem (leak.png: a copy of a
    valid/ patch), and a clean valid/."""
    root = tmp_path_factory.mktemp("planted")
    train = synthetic.write_folder_dataset(root / "train", 60, seed=7)
    synthetic.write_folder_dataset(root / "valid", 20, seed=8)
    images, _ = patches(3, seed=99)  # patches 0 and 2 are all tissue
    first = sorted((train / "0").iterdir())[0]
    shutil.copy(first, train / "0" / "exact_copy.png")  # exact pixel duplicate
    near = np.clip(images[0].astype(int) + 3, 0, 255).astype(np.uint8)
    write_image(train / "0" / "near_a.png", images[0])  # near-duplicates, different labels
    write_image(train / "1" / "near_b.png", near)
    write_image(train / "0" / "blank_white.png", np.full((96, 96, 3), 243, np.uint8))
    glass = np.full((96, 96, 3), 238, np.uint8)
    glass[:3, :5] = (190, 70, 150)
    write_image(train / "0" / "glass.png", glass)
    blurred = gaussian(images[2], sigma=4, channel_axis=-1, preserve_range=True)
    write_image(train / "1" / "blurred.png", blurred.round().astype(np.uint8))
    write_image(train / "1" / "small.png", images[2][:64, :64])  # wrong size
    shutil.copy(sorted((root / "valid" / "1").iterdir())[0], train / "1" / "leak.png")
    return root


@pytest.fixture(scope="module")
def report(planted: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("eda") / "report"
    cache = tmp_path_factory.mktemp("eda_cache")
    return out, write_eda_report(planted, out, cache_root=cache, progress=False)


def _count(folder: Path) -> dict[str, int]:
    return {c: sum(1 for _ in (folder / c).iterdir()) for c in ("0", "1")}


def test_class_balance_matches_an_independent_count(planted: Path, report: Any) -> None:
    _, r = report
    train, valid = _count(planted / "train"), _count(planted / "valid")
    splits = r["class_balance"]["splits"]
    assert splits["train"]["counts"] == {"0": train["0"], "1": train["1"] - 1}  # small.png
    assert splits["valid"]["counts"] == valid and splits["valid"]["n"] == 20
    assert sum(splits["train"]["percent"].values()) == pytest.approx(100)
    assert r["analysed_split"] == "train" and r["n_analysed"] == sum(train.values()) - 1


def test_planted_integrity_problems(report: Any) -> None:
    out, r = report
    integrity = r["integrity"]
    assert integrity["ok"] is False and integrity["splits"]["valid"] == []
    found = {f["kind"]: f for f in integrity["splits"]["train"]}
    assert set(found) == {"wrong_size", "duplicate_pixels"}
    assert found["wrong_size"]["count"] == 1 and "small.png" in found["wrong_size"]["examples"][0]
    dup = found["duplicate_pixels"]
    assert dup["count"] == 1 and "0/exact_copy.png" in dup["examples"][0]
    for f in found.values():  # thumbnails, read from the cache or from the file itself
        assert (out / f["figure"]["file"]).read_bytes().startswith(PNG_MAGIC)
    near = integrity["near_duplicates"]
    assert (near["groups"], near["extra_copies"], near["label_conflicts"]) == (1, 1, 1)
    assert near["examples"][0]["patches"] == ["0/near_a.png", "1/near_b.png"]
    assert near["examples"][0]["labels"] == ["0", "1"]
    assert (out / near["figure"]["file"]).is_file()


def test_planted_quality_flags(report: Any) -> None:
    _, r = report
    flags = r["image_statistics"]["flags"]
    assert flags["blank"]["examples"] == ["0/blank_white.png"]
    assert flags["background_only"]["examples"] == ["0/glass.png"]
    assert "1/blurred.png" in flags["blurry"]["examples"]
    assert flags["blank"]["per_class"] == {"0": 1, "1": 0}
    assert flags["blurry"]["count"] == sum(flags["blurry"]["per_class"].values())
    assert "0/blank_white.png" not in flags["blurry"]["examples"]


def test_statistics_sections(report: Any) -> None:
    _, r = report
    per = r["image_statistics"]["classes"]
    assert per["0"]["n"] + per["1"]["n"] == r["n_analysed"]
    for c in ("0", "1"):
        assert 0 < per[c]["grey"]["mean"] < 255 and per[c]["grey"]["std"] > 0
        assert 0 <= per[c]["hue"]["mean"] < 360 and 0 <= per[c]["background_fraction"] <= 1
        region = r["label_region"]["classes"][c]["grey"]
        assert region["difference"] == pytest.approx(region["centre"] - region["ring"])
        samples = r["samples"]["classes"][c]
        typical = [s["distance"] for s in samples["typical"]]
        atypical = [s["distance"] for s in samples["atypical"]]
        assert typical == sorted(typical) and atypical == sorted(atypical, reverse=True)
        assert typical[0] < atypical[0] and len(samples["random"]) == min(24, per[c]["n"])
    assert r["map"]["fitted_on"] == r["n_analysed"] == r["map"]["plotted"]
    assert 0 < sum(r["map"]["explained_variance_ratio"]) <= 1
    assert r["thresholds"]["blank_max_std"] == 3.0


def test_files_and_json(report: Any) -> None:
    out, r = report
    assert json.loads((out / "eda.json").read_text()) == r
    page = (out / "report.html").read_text()
    figures = sorted(p.name for p in out.glob("*.png"))
    assert len(figures) >= 15
    for name in figures:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
        assert f'src="{name}"' in page
    for heading in ("1. Class balance", "2. Integrity", "3. Image statistics", "4. The label"):
        assert heading in page
    assert "near_b.png" in page and "exact_copy.png" in page


def test_index_problems_have_examples(tmp_path: Path) -> None:
    root = synthetic.write_kaggle_dataset(tmp_path / "kaggle", n_train=16, seed=11)
    labels = (root / "train_labels.csv").read_text().splitlines()
    missing, twice = labels[1].split(",")[0], labels[2].split(",")[0]
    (root / "train" / f"{missing}.tif").unlink()  # listed, no file
    (root / "train_labels.csv").write_text("\n".join([*labels, labels[2]]) + "\n")  # id twice
    shutil.copy(root / "train" / f"{labels[3].split(',')[0]}.tif", root / "train" / "stray.tif")
    (root / "train" / "broken.tif").write_bytes(b"not an image")
    (root / "train_labels.csv").write_text((root / "train_labels.csv").read_text() + "broken,1\n")
    r = write_eda_report(root, tmp_path / "eda", progress=False)
    found = {f["kind"]: f for f in r["integrity"]["splits"]["train"]}
    assert found["missing_file"]["examples"] == [missing]
    assert found["duplicate_id"]["examples"] == [twice]
    assert found["unlabelled_file"]["examples"] == ["stray.tif"]
    assert found["unreadable"]["count"] == 1
    assert "figure" not in found["missing_file"]  # nothing to show
    for kind in ("duplicate_id", "unlabelled_file"):  # the files, found beside the labels
        assert (tmp_path / "eda" / found[kind]["figure"]["file"]).is_file()
    assert "figure" not in found["unreadable"]
    assert r["class_balance"]["splits"]["train"]["n"] == 16 - 2


def test_single_unlabelled_split(kaggle_data: Path, tmp_path: Path) -> None:
    r = write_eda_report(kaggle_data, tmp_path / "eda", split="test", progress=False)
    assert list(r["class_balance"]["splits"]) == ["test"]
    assert r["class_balance"]["splits"]["test"]["counts"] == {"unlabelled": 12}
    assert list(r["image_statistics"]["classes"]) == ["unlabelled"]
    assert r["integrity"]["near_duplicates"]["label_conflicts"] is None
    assert (tmp_path / "eda" / "report.html").is_file()


def test_report_renders_in_chromium(report: Any, chromium: Any) -> None:
    out, r = report
    opened = open_report(chromium, out / "report.html")
    assert_sound(opened)
    assert sorted(src for src, _ in opened.images) == sorted(p.name for p in out.glob("*.png"))
    assert opened.rows["balance-table"] == len(r["class_balance"]["splits"]) == 2
    assert opened.rows["flags"] == 3 and opened.rows["thresholds"] == len(r["thresholds"])
    assert opened.rows["statistics"] == 1 + 7 + 3  # patches, 7 channels, 3 more
    assert opened.heading == f"Exploratory data analysis: {r['data']}"


def test_flagged_csv_lists_each_planted_patch_by_id(planted: Path, report: Any) -> None:
    out, r = report
    flagged = pd.read_csv(out / "flagged.csv", dtype=str)
    assert list(flagged.columns) == ["id", "reason", "split", "path"]
    reasons = dict(zip(flagged["id"], flagged["reason"]))
    assert reasons["blank_white"] == "blank" and reasons["glass"] == "background"
    assert reasons["blurred"] == "blurry"
    assert reasons["leak"] == "duplicate"  # the pixels of a valid patch
    assert reasons["near_b"] == "near_duplicate" and "near_a" not in reasons  # one kept
    pair = {"exact_copy", sorted((planted / "train" / "0").glob("synth*"))[0].stem}
    assert len(pair & {i for i, why in reasons.items() if why == "duplicate"}) == 1  # one kept
    assert flagged["id"].is_unique and not flagged["id"].str.contains("/|\\.png").any()
    row = flagged.set_index("id").loc["blurred"]
    assert (row["split"], row["path"]) == ("train", "1/blurred.png")
    assert r["flagged"]["count"] == len(flagged)
    assert r["flagged"]["per_reason"] == {
        "blank": 1,
        "background": 1,
        "blurry": list(flagged["reason"]).count("blurry"),
        "duplicate": 2,
        "near_duplicate": 1,
    }


def test_a_data_set_named_like_markup_is_shown_as_text(report: Any, chromium: Any) -> None:
    out, r = report
    hostile = "<script>alert(1)</script>"
    page = out / "hostile.html"  # beside the figures it shows
    page.write_text(render_html({**r, "data": f"/data/{hostile}"}))
    text = page.read_text()
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    opened = open_report(chromium, page)
    assert_sound(opened)
    assert opened.heading == f"Exploratory data analysis: /data/{hostile}"
