"""WSInfer as the whole-slide peer: our checkpoint as a WSInfer model, and one timed run.

WSInfer 0.6.1 (``wsinfer run``) lives in its own venv (``../shared/peers/README.md``): our
checkpoint is traced to TorchScript (logits divided by the checkpoint's temperature, shape
(N, 1), which WSInfer turns into a probability with a sigmoid) and described by WSInfer's model
config (spec 1.0, patch 96 px at the checkpoint's mpp, ToTensor + Normalize with its mean/std).

How WSInfer tiles (``wsinfer/patchlib``, read at v0.6.1): a thumbnail of at most 2048 x 2048 is
segmented (saturation, median filter, binary threshold 7, closing, small objects and holes
removed); its contours become a polygon in level-0 coordinates; the grid of patch centres is
``range(half, width, step)`` x ``range(half, height, step)`` with ``patch = round(96 * model_mpp
/ slide_mpp)`` level-0 pixels, ``half = round(patch / 2)`` and ``step = round((1 - overlap) *
patch)``; a patch is kept when its centre lies inside the polygon; patches are read with
OpenSlide (or tiffslide) ``read_region`` at level 0 and resized by the config's transforms. At
0.972 um/px on both sides the patch is 96 level-0 pixels, top-left corners at multiples of 96:
the same tiles as ``metastasis slides --stride 96``.

WSInfer runs offline with ``HF_HUB_OFFLINE=1`` and an empty local model-zoo registry: here in a
private ``HOME`` under the work folder, so nothing is written to the user's home.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children (and theirs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class _Logits2D(nn.Module):
    """The model's logits, tempered, as (N, 1): what WSInfer expects with num_classes 1."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x) / self.temperature).reshape(-1, 1)


def export_for_wsinfer(checkpoint: str | Path, out: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Write ``model.pt`` (TorchScript) and ``config.json`` for WSInfer into ``out``."""
    from metastasis.checkpoint import load_checkpoint

    bundle = load_checkpoint(checkpoint)
    pre = bundle.preprocessing
    model = _Logits2D(bundle.build_model(), bundle.temperature).eval()
    example = torch.rand(2, 3, pre.input_size, pre.input_size)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
        diff = float((traced(example) - model(example)).abs().max())
    model_path = out / "model.pt"
    traced.save(str(model_path))
    config = {
        "spec_version": "1.0",
        "architecture": bundle.arch,
        "num_classes": 1,
        "class_names": ["tumour"],
        "patch_size_pixels": pre.input_size,
        "spacing_um_px": pre.mpp,
        "transform": [
            {"name": "ToTensor"},
            {"name": "Normalize", "arguments": {"mean": list(pre.mean), "std": list(pre.std)}},
        ],
    }
    config_path = out / "config.json"
    config_path.write_text(json.dumps(config, indent=1))
    info = {"threshold": bundle.threshold, "temperature": bundle.temperature,
            "mpp": pre.mpp, "arch": bundle.arch, "trace_max_abs_diff": diff}  # fmt: skip
    return model_path, config_path, info


def run_wsinfer(
    python: str, slide: Path, model: Path, config: Path, work: Path, threads: int,
    overlap: float = 0.0, num_workers: int | None = None, batch_size: int = 32,
    backend: str = "openslide",
) -> dict[str, Any]:  # fmt: skip
    """One ``wsinfer run`` on ``slide`` from an empty results folder; wall time and its CSV."""
    wsi_dir = work / "wsi"
    results = work / "results"
    home = work / "home"
    for d in (wsi_dir, results):
        shutil.rmtree(d, ignore_errors=True)
    wsi_dir.mkdir(parents=True)
    (wsi_dir / slide.name).symlink_to(slide.resolve())
    registry = home / ".wsinfer-zoo" / "wsinfer-zoo-registry.json"
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_text('{"models": {}}')
    env = dict(os.environ, HF_HUB_OFFLINE="1", HOME=str(home), WSINFER_FORCE_CPU="1",
               OMP_NUM_THREADS=str(threads))  # fmt: skip
    cmd = [python, "-m", "wsinfer", "--backend", backend, "run", "--wsi-dir", str(wsi_dir),
           "--results-dir", str(results), "--config", str(config), "--model-path", str(model),
           "--batch-size", str(batch_size), "--patch-overlap-ratio", str(overlap)]  # fmt: skip
    if num_workers is not None:
        cmd += ["--num-workers", str(num_workers)]
    start, cpu0 = time.perf_counter(), children_cpu_s()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, children_cpu_s() - cpu0
    log = proc.stdout + proc.stderr
    (work / "wsinfer.log").write_text(log)
    if proc.returncode:
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise RuntimeError(f"wsinfer exited with {proc.returncode}:\n{tail}")
    csvs = sorted((results / "model-outputs-csv").glob("*.csv"))
    if not csvs:
        raise RuntimeError(f"wsinfer wrote no CSV; log in {work / 'wsinfer.log'}")
    m = re.search(r"Found (\d+) patches within tissue", log)
    run = {
        "command": " ".join(cmd),
        "wall_s": wall,
        "cpu_s": cpu,
        "patches_found": int(m.group(1)) if m else None,
        "csv": str(csvs[0]),
    }
    return read_wsinfer(run)


def read_wsinfer(run: dict[str, Any]) -> dict[str, Any]:
    """A WSInfer run with its CSV's tiles added."""
    import pandas as pd

    df = pd.read_csv(run["csv"])
    prob = next(c for c in df.columns if c.startswith("prob_"))
    return {
        **run,
        "tiles": len(df),
        "tiles_per_s": len(df) / run["wall_s"],
        "x": df["minx"].to_numpy(np.int64),
        "y": df["miny"].to_numpy(np.int64),
        "size": df["width"].to_numpy(np.int64),
        "probability": df[prob].to_numpy(np.float64),
    }
