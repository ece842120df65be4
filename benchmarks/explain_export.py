"""Explanations and exports on real patches: parity, start-up, Grad-CAM speed and focus.

    python benchmarks/explain_export.py --checkpoint RUN --data ../shared/data/pcam-jpeg/valid
        [--n 256] [--json OUT]

RUN is a run folder written by ``metastasis train`` (so it holds ``model.onnx``). Prints:
- the export parity of ONNX and TorchScript against eager PyTorch on ``--n`` real patches (max
  absolute logit difference) and the seconds each export takes;
- the start of a ``Predictor`` (checkpoint -> checked ONNX Runtime engine) with the run's
  ``model.onnx`` against exporting it in memory (a copy of the run without it), median of 3;
- Grad-CAM patches/s on ``--n`` patches, and the mean share of the heat maps inside the central
  32x32 for patches labelled tumour and normal (1/9 = 0.111 for an even spread).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine, save

from metastasis.checkpoint import load_checkpoint
from metastasis.data.cache import open_split
from metastasis.export.bundle import export_bundle
from metastasis.inference.explain import centre_share, gradcam
from metastasis.inference.predictor import Predictor


def _start(run: Path, repeats: int = 3) -> tuple[float, str]:
    times, engine = [], ""
    for _ in range(repeats):
        t = time.perf_counter()
        predictor = Predictor.from_checkpoint(run)
        times.append(time.perf_counter() - t)
        engine = predictor.engine.describe()
    return statistics.median(times), engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a run folder with model.onnx")
    ap.add_argument("--data", required=True, help="labelled patches (e.g. pcam-jpeg/valid)")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    run = Path(args.checkpoint)
    cached = open_split(args.data, progress=False)
    usable = cached.usable_indices()
    rows = usable[np.linspace(0, len(usable) - 1, args.n).round().astype(int)]
    images, labels = np.asarray(cached.images[rows]), cached.labels[rows]
    bundle = load_checkpoint(run)
    out: dict[str, object] = {"machine": machine(), "n": len(rows), "data": args.data}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, name in (("onnx", "m.onnx"), ("torchscript", "m.pt")):
            t = time.perf_counter()
            diff = export_bundle(bundle, Path(tmp) / name, fmt, images)
            out[f"{fmt}_max_abs_diff"] = diff
            out[f"{fmt}_export_s"] = round(time.perf_counter() - t, 3)
            print(
                f"{fmt}: max |logit difference| {diff:.2e} on {len(rows)} real patches, "
                f"export + check {out[f'{fmt}_export_s']} s"
            )
        bare = Path(tmp) / "run"
        bare.mkdir()
        shutil.copy(run / "checkpoint.pt", bare / "checkpoint.pt")
        for label, folder in (("with model.onnx", run), ("exporting in memory", bare)):
            seconds, engine = _start(folder)
            out[f"start_s {label}"] = round(seconds, 3)
            print(f"Predictor start {label}: {seconds:.3f} s ({engine})")
    predictor = Predictor.from_checkpoint(run)
    gradcam(predictor, images[:4])  # imports and first-call costs
    t = time.perf_counter()
    heat = gradcam(predictor, images)
    seconds = time.perf_counter() - t
    share = centre_share(heat)
    out["gradcam_patches_per_s"] = round(len(images) / seconds, 1)
    out["centre_share_tumour"] = float(np.nanmean(share[labels == 1]))
    out["centre_share_normal"] = float(np.nanmean(share[labels == 0]))
    print(
        f"Grad-CAM ({bundle.arch}): {out['gradcam_patches_per_s']} patches/s; mean centre "
        f"share: tumour {out['centre_share_tumour']:.3f}, normal "
        f"{out['centre_share_normal']:.3f} (even spread 0.111)"
    )
    save(out, args.json)


if __name__ == "__main__":
    main()
