"""The notebooks: stored without outputs, and each runs top to bottom, headless, as it stands."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CLI_IN_A_CELL = ("!metastasis", "%%bash", "%%sh", "subprocess")
MIN_FIGURES = {  # pictures each notebook shows inline
    "01_data_and_eda": 6,
    "02_train_and_evaluate": 4,
    "03_tune": 3,
    "04_use_a_model": 3,  # mistakes, Grad-CAM, the slide heatmap
}


def test_the_four_notebooks_are_there() -> None:
    assert [p.stem for p in NOTEBOOKS] == [
        "01_data_and_eda",
        "02_train_and_evaluate",
        "03_tune",
        "04_use_a_model",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs_and_only_the_python_api(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "no code cells"
    for cell in code:
        assert cell.outputs == [], f"{path.name}: a cell stored with outputs"
        assert cell.execution_count is None, f"{path.name}: a cell stored with a count"
        assert not any(s in cell.source for s in CLI_IN_A_CELL), cell.source
    marked = [c for c in code if "YOUR DATA" in c.source]
    assert len(marked) == 1, f"{path.name}: needs one cell marked YOUR DATA"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_headless_with_its_figures(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    env_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp_path)  # the notebook's tempfile.mkdtemp() lands here
    try:
        client = NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        if env_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = env_tmp
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= MIN_FIGURES[path.stem], f"{path.name}: {len(figures)} figures inline"
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Traceback" not in streams
