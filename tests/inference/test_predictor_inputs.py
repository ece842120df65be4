"""Predictor for notebooks: arrays, files and folders in; id, probability, prediction out."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.helpers import patches, write_image

from metastasis.engine.trainer import RunResult
from metastasis.errors import DataError
from metastasis.inference.inputs import resize_patch
from metastasis.inference.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(trained_run: RunResult) -> Predictor:
    return Predictor.from_checkpoint(trained_run.run_dir, device="cpu", batch_size=16)


def test_arrays_give_labels_at_the_checkpoints_threshold(predictor: Predictor) -> None:
    x, _ = patches(20, seed=4)
    table = predictor.predict(x)
    assert list(table.columns) == ["id", "probability", "prediction"]
    assert list(table["id"]) == [str(i) for i in range(20)]
    np.testing.assert_allclose(table["probability"], predictor.predict_proba(x), atol=1e-7)
    expected = (table["probability"] >= predictor.threshold).astype(int)
    assert (table["prediction"] == expected).all()
    assert len(table.attrs["excluded"]) == 0


def test_a_folder_matches_the_training_runs_validation(
    predictor: Predictor, trained_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    table = predictor.predict(demo_data / "valid", cache_dir=tmp_path)
    assert list(table.columns) == ["id", "probability", "prediction", "truth"]
    saved = pd.read_csv(trained_run.run_dir / "val_predictions.csv", dtype={"id": str})
    merged = table.merge(saved, on="id")
    assert len(merged) == len(table) == len(saved)
    np.testing.assert_allclose(merged["probability_x"], merged["probability_y"], atol=1e-5)
    assert (merged["truth_x"] == merged["truth_y"]).all()


def test_files_as_the_cli_reads_them(predictor: Predictor, tmp_path: Path) -> None:
    x, _ = patches(3, seed=5)
    good = [write_image(tmp_path / f"p{i}.png", x[i]) for i in range(3)]
    small = write_image(tmp_path / "small.png", x[0][:95])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    grey = write_image(tmp_path / "grey.png", x[1], mode="L")
    table = predictor.predict([*good, small, broken, grey])
    assert list(table["id"]) == ["p0", "p1", "p2"]
    np.testing.assert_allclose(table["probability"], predictor.predict_proba(x), atol=1e-6)
    excluded = table.attrs["excluded"].set_index("id")["problem"].to_dict()
    assert excluded == {"small": "wrong_size", "broken": "unreadable", "grey": "wrong_mode"}
    # one file: its row
    one = predictor.predict(good[1])
    assert list(one["id"]) == ["p1"]
    assert one["probability"].iloc[0] == pytest.approx(table["probability"].iloc[1], abs=1e-7)
    # predict_proba keeps the order of its inputs, so an unusable file stops it
    with pytest.raises(DataError, match=r"small\.png: wrong_size: 96x95"):
        predictor.predict_proba([good[0], small])
    np.testing.assert_allclose(predictor.predict_proba(good), table["probability"], atol=1e-7)


def test_other_sizes_refused_unless_resize_is_asked(predictor: Predictor, tmp_path: Path) -> None:
    x, _ = patches(4, seed=6)
    big = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)  # 192 x 192
    with pytest.raises(DataError, match=r"192x192, expected 96x96 \(pass resize=True"):
        predictor.predict(big)
    with pytest.raises(DataError, match="192x192"):
        predictor.predict_proba(big)
    resized = np.stack([resize_patch(a) for a in big])
    assert resized.shape == x.shape
    assert np.abs(resized.astype(int) - x.astype(int)).mean() < 8  # a picture of the same patch
    np.testing.assert_allclose(
        predictor.predict(big, resize=True)["probability"],
        predictor.predict_proba(resized),
        atol=1e-7,
    )
    # a 96x96 patch is never touched by resize=True
    np.testing.assert_array_equal(
        predictor.predict_proba(x, resize=True), predictor.predict_proba(x)
    )
    file = write_image(tmp_path / "big.png", big[0])
    assert predictor.predict(file).empty
    assert predictor.predict(file, resize=True)["probability"].iloc[0] == pytest.approx(
        predictor.predict_proba(resized[:1])[0], abs=1e-7
    )


def test_a_folder_with_a_wrong_sized_file(
    predictor: Predictor, demo_data: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "valid"
    shutil.copytree(demo_data / "valid", folder)
    victim = sorted((folder / "1").iterdir())[0]
    pixels = np.asarray(Image.open(victim))
    big = np.repeat(np.repeat(pixels, 2, axis=0), 2, axis=1)
    write_image(victim, big)
    plain = predictor.predict(folder, cache_dir=tmp_path / "cache")
    assert victim.stem not in set(plain["id"])
    assert plain.attrs["excluded"]["problem"].tolist() == ["wrong_size"]
    resized = predictor.predict(folder, resize=True, cache_dir=tmp_path / "cache")
    assert len(resized) == len(plain) + 1 and len(resized.attrs["excluded"]) == 0
    row = resized.set_index("id").loc[victim.stem]
    assert row["truth"] == 1
    assert row["probability"] == pytest.approx(
        predictor.predict_proba(resize_patch(big))[0], abs=1e-6
    )
    others = resized[resized["id"] != victim.stem].reset_index(drop=True)
    pd.testing.assert_frame_equal(others, plain.reset_index(drop=True), check_exact=False)


def test_what_is_never_converted(predictor: Predictor) -> None:
    x, _ = patches(2, seed=7)
    with pytest.raises(DataError, match="expected uint8"):
        predictor.predict(x.astype(np.float32) / 255)
    with pytest.raises(DataError, match="N x 96 x 96 x 3"):
        predictor.predict(x[..., :1])
    with pytest.raises(DataError, match="got int"):
        predictor.predict(3)  # type: ignore[arg-type]


def test_a_pcam_file_and_a_kaggle_folder(
    predictor: Predictor, kaggle_data: Path, tmp_path: Path
) -> None:
    from metastasis.data import synthetic

    x_file, _ = synthetic.write_pcam_h5(tmp_path / "pcam", "test", 12, seed=8)
    table = predictor.predict(x_file, cache_dir=tmp_path / "cache")
    assert len(table) == 12 and "truth" in table  # PCam's y file gives the truth
    # a Kaggle folder: its unlabelled test split, as `metastasis predict` chooses it
    kaggle = predictor.predict(kaggle_data, cache_dir=tmp_path / "cache")
    assert list(kaggle.columns) == ["id", "probability", "prediction"]
    assert set(kaggle["id"]) == {p.stem for p in (kaggle_data / "test").iterdir()}
