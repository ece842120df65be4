from pathlib import Path

import pytest
from tests.helpers import patches, write_image

from metastasis.data.layouts import open_layout
from metastasis.data.listing import BAD_LABEL, DUPLICATE_ID, MISSING_FILE, UNLABELLED_FILE
from metastasis.errors import DataError


def test_kaggle_layout_lists_train_and_test(kaggle_data: Path) -> None:
    layout = open_layout(kaggle_data)
    assert layout.kind == "kaggle" and layout.splits == ["train", "test"]
    train, test = layout.listing("train"), layout.listing("test")
    assert len(train.items) == 40 and train.labelled and not train.findings
    assert len(test.items) == 12 and not test.labelled
    assert all(it.label is None for it in test.items)
    assert all(it.path is not None and it.path.stem == it.id for it in train.items)


def test_kaggle_csv_problems_are_findings(tmp_path: Path) -> None:
    imgs, _ = patches(4)
    for i, name in enumerate(["a", "b", "c", "d"]):
        write_image(tmp_path / "train" / f"{name}.tif", imgs[i])
    (tmp_path / "train_labels.csv").write_text("id,label\na,0\nb,1\nb,0\nc,yes\nghost,1\n")
    listing = open_layout(tmp_path).listing("train")
    kinds = {f.kind: f for f in listing.findings}
    assert kinds[DUPLICATE_ID].examples == ["b"]
    assert kinds[BAD_LABEL].examples == ["c (label 'yes')"]
    assert kinds[MISSING_FILE].examples == ["ghost"]
    assert kinds[UNLABELLED_FILE].examples == ["d.tif"]
    assert [(it.id, it.label) for it in listing.items] == [("a", 0)]


def test_kaggle_csv_without_label_column(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "a.tif", patches(1)[0][0])
    (tmp_path / "train_labels.csv").write_text("id,target\na,0\n")
    with pytest.raises(DataError, match=r"train_labels\.csv: expected columns id,label"):
        open_layout(tmp_path).listing("train")


def test_class_folders_and_split_folders(demo_data: Path) -> None:
    layout = open_layout(demo_data)
    assert layout.kind == "folder" and layout.splits == ["train", "valid"]
    train = layout.listing("train")
    assert len(train.items) == 160 and {it.label for it in train.items} == {0, 1}
    single = open_layout(demo_data / "valid")
    assert single.splits == ["valid"] and len(single.listing("valid").items) == 64


def test_same_name_in_both_class_folders_is_a_duplicate_id(tmp_path: Path) -> None:
    imgs, _ = patches(3)
    write_image(tmp_path / "0" / "x.png", imgs[0])
    write_image(tmp_path / "1" / "x.png", imgs[1])
    write_image(tmp_path / "1" / "y.png", imgs[2])
    listing = open_layout(tmp_path).listing(tmp_path.name)
    assert [it.id for it in listing.items] == ["y"]
    assert listing.findings[0].kind == DUPLICATE_ID


def test_flat_folder_is_unlabelled(tmp_path: Path) -> None:
    write_image(tmp_path / "p.jpg", patches(1)[0][0])
    listing = open_layout(tmp_path).listing(tmp_path.name)
    assert not listing.labelled and listing.items[0].label is None


def test_unknown_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no known layout"):
        open_layout(tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        open_layout(tmp_path / "nope")


def test_choose_split(demo_data: Path) -> None:
    layout = open_layout(demo_data)
    assert layout.choose_split(None, ("train",)) == "train"
    assert layout.choose_split("valid", ()) == "valid"
    with pytest.raises(DataError, match="choose one with --split"):
        layout.choose_split(None, ("test",))
    with pytest.raises(DataError, match="no split 'test'"):
        layout.choose_split("test", ())
