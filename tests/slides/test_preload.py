"""slides.run's start-up: the modules only the outputs need (pandas, Matplotlib, Jinja2) are not
imported before the slide, and importing them in the background (``preload``) while the slide
is analysed changes no output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUN = """
import sys
from metastasis.slides import run
if sys.argv[1] == "off":
    run.preload = lambda modules: None  # each module imported where it is first used
table = run.run_slides([sys.argv[2]], sys.argv[3], sys.argv[4], progress=False, engine="torch",
                       block_tiles=4)
print(list(table["status"]))
"""


def test_the_slides_command_imports_no_output_module_before_the_slide() -> None:
    script = (
        "import sys\nimport metastasis.cli.slides, metastasis.slides.run\n"
        "from metastasis.cli import build_parser\nbuild_parser(['slides'])\n"
        "print(sorted(m for m in ('pandas', 'matplotlib', 'jinja2') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr


def _strip_times(folder: Path) -> dict[str, bytes]:
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for name, data in files.items():
        if name.endswith("summary.json"):
            summary = json.loads(data)
            for key in ("seconds", "tiles_per_s", "outputs"):
                summary.pop(key)
            files[name] = json.dumps(summary, sort_keys=True).encode()
        elif name == "slides.csv":  # its last column: the slide's seconds
            files[name] = b"\n".join(line.rsplit(b",", 1)[0] for line in data.splitlines())
    return files


def test_outputs_are_the_same_with_and_without_the_background_imports(
    blob_slide: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    outs = {}
    for mode in ("on", "off"):
        out = tmp_path / mode
        cmd = [sys.executable, "-c", RUN, mode, str(blob_slide), str(random_checkpoint), str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.splitlines()[-1] == "['ok']", done.stderr
        outs[mode] = _strip_times(out)
    assert sorted(outs["on"]) == sorted(outs["off"])
    assert "blob/heatmap.png" in outs["on"] and "report.html" in outs["on"]
    for name, data in outs["on"].items():
        assert data == outs["off"][name], name
