"""Stain robustness: a labelled patch folder recoloured as other labs would stain and scan it,
and each checkpoint evaluated on the original and on every recoloured copy (issue 21).

    python benchmarks/stain_shift.py --data ../shared/data/pcam-jpeg/valid --out SHIFTED \\
        --checkpoints RUN [RUN ...]

Each shift is colour deconvolution into haematoxylin, eosin and residual optical densities
(Ruifrok & Johnston's vectors, as ``transforms.augment.hed_jitter``), each stain's density
scaled and offset, mixed back with (for one shift) other stain colours, then a scanner-like
gamma on RGB. The copies are written once as PNG (lossless) under ``OUT/shifted/NAME/{0,1}``;
``metastasis evaluate`` (its Python API, ``evaluate_checkpoint``) runs on the original and each
copy, and ``OUT/stain_shift.csv`` / ``OUT/stain_shift.md`` get one row per checkpoint and shift:
ROC-AUC, accuracy and sensitivity at the checkpoint's own threshold, and their drops from the
original; the worst-case drop per checkpoint is printed last.

``--time-predict TRAIN`` instead times ``Predictor.predict`` (the call behind ``metastasis
predict``) on ``--data`` for each checkpoint as it is and with a Macenko and a Reinhard
reference (fitted on 256 patches of TRAIN) put into a copy of it: same weights, same engine;
the variants are run in turn, ``--repeats`` rounds, wall and CPU seconds of each
(``OUT/predict_timing.csv``).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from metastasis.checkpoint import load_checkpoint, save_checkpoint
from metastasis.data.cache import open_split
from metastasis.inference.evaluate import evaluate_checkpoint
from metastasis.inference.predictor import Predictor
from metastasis.transforms.augment import HED_FROM_RGB, RGB_FROM_HED
from metastasis.transforms.stain import sample_reference

SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class Shift:
    """Per stain (H, E, residual): density x scale + offset (natural-log OD); then RGB ** gamma;
    ``vectors``: other stain colours (rows H, E, residual of an RGB-from-HED matrix)."""

    name: str
    scale: tuple[float, float, float]
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gamma: float = 1.0
    vectors: tuple[tuple[float, float, float], ...] | None = None
    note: str = ""


SHIFTS = (
    Shift("paler-pinker", (0.65, 1.25, 1.0), (-0.02, 0.03, 0.0), 0.9, note="weak H, strong E"),
    Shift("darker-bluer", (1.4, 0.8, 1.0), (0.04, -0.02, 0.0), 1.15, note="strong H, weak E"),
    Shift("h-strong", (1.35, 1.0, 1.0), (0.03, 0.0, 0.0), note="haematoxylin only"),
    Shift("e-strong", (1.0, 1.4, 1.0), (0.0, 0.04, 0.0), note="eosin only"),
    Shift("faded", (0.7, 0.7, 1.0), (-0.02, -0.02, 0.0), 0.85, note="both weak, brighter scan"),
    Shift("gamma-dark", (1.0, 1.0, 1.0), gamma=1.3, note="scanner gamma only"),
    Shift(
        "other-dyes",
        (1.1, 0.9, 1.0),
        vectors=((0.55, 0.75, 0.37), (0.12, 0.95, 0.28), (0.27, 0.57, 0.78)),
        gamma=1.05,
        note="stain colours rotated (another lab's haematoxylin and eosin)",
    ),
)


def shift_batch(x: torch.Tensor, shift: Shift) -> torch.Tensor:
    """uint8 N x H x W x 3 recoloured by ``shift`` (uint8)."""
    rgb = x.double().div(255.0).clamp_min(1e-6)
    od = -torch.log(rgb) @ HED_FROM_RGB  # N x H x W x 3 stains
    od = od * torch.tensor(shift.scale, dtype=torch.float64)
    od = od + torch.tensor(shift.offset, dtype=torch.float64)
    mix = RGB_FROM_HED if shift.vectors is None else torch.tensor(shift.vectors).double()
    out = torch.exp(-(od @ mix)).clamp(0, 1) ** shift.gamma
    return (out * 255.0).round().to(torch.uint8)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)


def write_shifted(data: Path, out: Path, shift: Shift, batch: int = 512) -> Path:
    """``data``'s images recoloured into ``out/NAME`` (same relative paths, PNG), once."""
    target = out / shift.name
    done = target / ".complete"
    if done.is_file():
        return target
    tmp = out / f".{shift.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    files = _images(data)
    for i in range(0, len(files), batch):
        part = files[i : i + batch]
        x = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in part]))
        y = shift_batch(x, shift).numpy()
        for p, img in zip(part, y):
            dest = (tmp / p.relative_to(data)).with_suffix(".png")
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(dest)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    (target / ".complete").touch()
    return target


def _row(metrics: dict, name: str) -> dict:
    return {
        "roc_auc": float(metrics["roc_auc"]),
        "accuracy": float(metrics["accuracy"]),
        "sensitivity": float(metrics["sensitivity"]),
        "shift": name,
    }


def run(data: Path, out: Path, checkpoints: list[Path], engine: str = "auto") -> pd.DataFrame:
    """The table: one row per checkpoint and set (``original`` and each shift)."""
    sets = {"original": data}
    for shift in SHIFTS:
        sets[shift.name] = write_shifted(data, out / "shifted", shift)
        print(f"shift {shift.name}: {sets[shift.name]}", flush=True)
    rows = []
    for ckpt in checkpoints:
        for name, folder in sets.items():
            where = out / "evaluations" / ckpt.name / name
            shutil.rmtree(where, ignore_errors=True)
            metrics = evaluate_checkpoint(
                ckpt, folder, where, progress=False, engine=engine, gallery=0
            )
            rows.append({"checkpoint": str(ckpt), **_row(metrics, name)})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    base = table[table["shift"] == "original"].set_index("checkpoint")
    for col in ("roc_auc", "accuracy", "sensitivity"):
        table[f"{col}_drop"] = table["checkpoint"].map(base[col]) - table[col]
    return table


def time_predict(
    data: Path, out: Path, checkpoints: list[Path], train: Path, repeats: int
) -> pd.DataFrame:
    """Wall and CPU seconds of ``Predictor.predict(data)`` per checkpoint and stain method."""
    cached = open_split(train, progress=False)
    rows = []
    for ckpt in checkpoints:
        bundle = load_checkpoint(ckpt)
        variants = {}
        for method in ("none", "macenko", "reinhard"):
            ref = sample_reference(method, cached.images, cached.usable_indices(), seed=0)
            bundle.preprocessing = dataclasses.replace(bundle.preprocessing, stain=ref)
            path = out / "timing" / f"{ckpt.name}-{method}" / "checkpoint.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(path, bundle)
            variants[method] = Predictor.from_checkpoint(path)
            variants[method].predict(data)  # warm: cache, engine
        for r in range(repeats):
            for method, predictor in variants.items():
                wall, cpu = time.perf_counter(), time.process_time()
                table = predictor.predict(data)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                rows.append({"checkpoint": str(ckpt), "stain": method, "round": r,
                             "patches": len(table), "wall_s": wall, "cpu_s": cpu,
                             "engine": predictor.engine.describe()})  # fmt: skip
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="labelled patch folder (0/, 1/)")
    ap.add_argument("--out", type=Path, required=True, help="shifted copies and results")
    ap.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="runs to evaluate")
    ap.add_argument("--engine", default="auto", help="inference engine (default auto)")
    ap.add_argument("--time-predict", type=Path, metavar="TRAIN", help="time predict instead")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of --time-predict")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"--data {args.data}: not a folder")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.time_predict is not None:
        timing = time_predict(args.data, args.out, args.checkpoints, args.time_predict,
                              args.repeats)  # fmt: skip
        timing.to_csv(args.out / "predict_timing.csv", index=False, float_format="%.3f")
        summary = timing.groupby(["checkpoint", "stain"])[["wall_s", "cpu_s"]].median()
        print(summary.to_string(float_format="%.3f"))
        return timing
    table = run(args.data, args.out, args.checkpoints, args.engine)
    table.to_csv(args.out / "stain_shift.csv", index=False, float_format="%.4f")
    (args.out / "stain_shift.md").write_text(table.to_markdown(index=False, floatfmt=".4f"))
    print(table.to_string(index=False, float_format="%.4f"))
    worst = table.groupby("checkpoint")[["roc_auc_drop", "accuracy_drop", "sensitivity_drop"]]
    print("worst-case drops:\n" + worst.max().to_string(float_format="%.4f"))
    return table


if __name__ == "__main__":
    main()
