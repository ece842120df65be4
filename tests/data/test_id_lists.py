"""Id lists (``train --exclude FILE``): read from real files, applied to a real cached split."""

from pathlib import Path

import numpy as np
import pytest

from metastasis.data.cache import open_split
from metastasis.data.id_lists import leave_out, read_id_list
from metastasis.errors import DataError


def test_reads_the_eda_flagged_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "flagged.csv"
    path.write_bytes("\ufeffid,reason\npatch1,blank\n patch2 ,blurry\npatch1,background\n".encode())
    assert read_id_list(path) == {"patch1", "patch2"}


def test_reads_an_id_column_in_any_place_and_case(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("reason, ID \nblank,a\nblurry,b\n")
    assert read_id_list(path) == {"a", "b"}


def test_reads_one_id_per_line(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("# left out after review\n\nabc\r\n  def  \n")
    assert read_id_list(path) == {"abc", "def"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name,reason\na,blank\n", r"expected a column id, found name,reason$"),
        (b"", r"lists no ids"),
        (b"# nothing\n\n", r"lists no ids"),
        (b"id,reason\n", r"lists no ids"),
        (b"caf\xe9\n", r"not UTF-8 text"),
    ],
)
def test_refuses_a_list_it_cannot_use(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        read_id_list(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope.csv: cannot read id list"):
        read_id_list(tmp_path / "nope.csv")


def test_leave_out_drops_the_listed_patches_from_both_sides(
    demo_data: Path, tmp_path: Path
) -> None:
    train = open_split(demo_data / "train", cache_root=tmp_path, progress=False)
    val = open_split(demo_data / "valid", cache_root=tmp_path, progress=False)
    t_idx, v_idx = train.usable_indices(), val.usable_indices()
    listed = [*train.ids[t_idx[:3]], val.ids[v_idx[5]], "not-in-the-data"]
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(listed) + "\n")
    t_kept, v_kept, record = leave_out(path, train, t_idx, val, v_idx)
    assert (record.n_ids, record.n_matched, record.train, record.val) == (5, 4, 3, 1)
    assert len(t_kept) == len(t_idx) - 3 and len(v_kept) == len(v_idx) - 1
    assert not set(listed) & (set(train.ids[t_kept]) | set(val.ids[v_kept]))
    np.testing.assert_array_equal(t_kept, t_idx[3:])  # the rest in its order


def test_leave_out_refuses_a_list_that_matches_nothing(demo_data: Path, tmp_path: Path) -> None:
    train = open_split(demo_data / "train", cache_root=tmp_path, progress=False)
    idx = train.usable_indices()
    path = tmp_path / "ids.txt"
    path.write_text("train/0/patch0.png\n")  # a path, not an id
    with pytest.raises(DataError, match=r"none of its 1 ids \(e.g. 'train/0/patch0.png'\)"):
        leave_out(path, train, idx, train, idx)
