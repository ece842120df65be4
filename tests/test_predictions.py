"""The one vocabulary of per-patch tables: column names, their order and the prediction rule."""

from pathlib import Path

import numpy as np
import pandas as pd

from metastasis.predictions import COLUMNS, labels_frame, predictions_frame, write_table


def test_columns_come_in_one_order_with_extras_after() -> None:
    table = predictions_frame(
        ["a", "b", "c"], np.float32([0.2, 0.5, 0.9]), 0.5, truth=[0, 1, 1], kind="x", png="p"
    )
    assert list(table.columns) == [*COLUMNS, "kind", "png"]
    assert table["prediction"].tolist() == [0, 1, 1]  # at the threshold counts as tumour
    assert table["truth"].tolist() == [0, 1, 1]


def test_truth_only_where_labels_are_known() -> None:
    table = predictions_frame(np.array(["a"], dtype=object), [0.7], 0.8)
    assert list(table.columns) == ["id", "probability", "prediction"]
    assert table["prediction"].tolist() == [0]
    assert list(labels_frame(["a"], [1], split="val").columns) == ["id", "truth", "split"]


def test_written_with_six_decimals_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    write_table(predictions_frame(["007"], np.float32([1 / 3]), 0.5, truth=[0]), path)
    assert path.read_text() == "id,probability,prediction,truth\n007,0.333333,0,0\n"
    assert pd.read_csv(path, dtype={"id": str})["id"].tolist() == ["007"]
