import json
import shutil
from pathlib import Path

from tests.helpers import patches, write_image

from metastasis.cli import main
from metastasis.data.checks import check_dataset


def _planted_kaggle(root: Path) -> Path:
    """A Kaggle folder with one of each problem the issue names."""
    imgs, _ = patches(6, seed=9)
    for i in range(4):
        write_image(root / "train" / f"ok{i}.tif", imgs[i])
    write_image(root / "train" / "dup.tif", imgs[0])  # same pixels as ok0
    write_image(root / "train" / "small.tif", imgs[4][:50, :50])
    write_image(root / "train" / "alpha.png", imgs[5], mode="RGBA")
    write_image(root / "train" / "nolabel.tif", imgs[5])
    write_image(root / "train" / "trunc.tif", imgs[1])
    data = (root / "train" / "trunc.tif").read_bytes()
    (root / "train" / "trunc.tif").write_bytes(data[:2000])
    ids = ["ok0", "ok1", "ok2", "ok3", "dup", "small", "alpha", "trunc", "ghost"]
    labels = ["0", "1", "0", "1", "0", "1", "0", "1", "1"]
    (root / "train_labels.csv").write_text(
        "id,label\n" + "".join(f"{i},{lab}\n" for i, lab in zip(ids, labels))
    )
    return root


def test_clean_kaggle_set_has_no_findings(kaggle_data: Path) -> None:
    report = check_dataset(kaggle_data, progress=False)
    assert report.ok and report.layout == "kaggle"
    train, test = report.splits
    assert (train.split, train.n_usable, train.labelled) == ("train", 40, True)
    assert (test.split, test.n_usable, test.labelled) == ("test", 12, False)
    assert sum(train.class_counts.values()) == 40
    assert "No problems found." in report.format_text()


def test_every_planted_problem_is_named(tmp_path: Path) -> None:
    report = check_dataset(_planted_kaggle(tmp_path / "k"), progress=False)
    assert not report.ok
    (train,) = report.splits
    found = {f.kind: f for f in train.findings}
    assert found["missing_file"].examples == ["ghost"]
    assert found["unlabelled_file"].examples == ["nolabel.tif"]
    assert found["unreadable"].count == 1 and "trunc.tif" in found["unreadable"].examples[0]
    assert found["wrong_size"].examples == ["train/small.tif (50x50, expected 96x96)"]
    assert found["wrong_mode"].count == 1 and "alpha.png" in found["wrong_mode"].examples[0]
    assert found["duplicate_pixels"].count == 1
    assert found["duplicate_pixels"].examples == ["train/dup.tif = train/ok0.tif"]
    assert train.n_usable == 5  # ok0-3 and dup
    text = report.format_text()
    for kind in found:
        assert kind in text


def test_duplicates_across_splits_are_leakage(tmp_path: Path) -> None:
    imgs, _ = patches(3, seed=4)
    write_image(tmp_path / "train" / "0" / "a.png", imgs[0])
    write_image(tmp_path / "train" / "1" / "b.png", imgs[1])
    write_image(tmp_path / "valid" / "0" / "c.png", imgs[0])
    report = check_dataset(tmp_path, progress=False)
    assert [f.kind for f in report.findings] == ["duplicate_across_splits"]
    assert report.findings[0].examples == ["train/0/a.png = valid/0/c.png"]


def test_cli_strict_exit_codes_and_json(tmp_path: Path, kaggle_data: Path, capsys) -> None:
    assert main(["check", str(kaggle_data), "--strict", "--no-progress"]) == 0
    bad = _planted_kaggle(tmp_path / "k")
    out = tmp_path / "report.json"
    assert main(["check", str(bad), "--no-progress", "--json", str(out)]) == 0
    assert main(["check", str(bad), "--strict", "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "missing_file: 1" in text and "wrong_size: 1" in text
    saved = json.loads(out.read_text())
    assert saved["ok"] is False and saved["layout"] == "kaggle"


def test_check_one_split_only(kaggle_data: Path, tmp_path: Path) -> None:
    shutil.copytree(kaggle_data, tmp_path / "k")
    report = check_dataset(tmp_path / "k", split="test", progress=False)
    assert [s.split for s in report.splits] == ["test"]
