"""Export a checkpoint as ONNX or TorchScript, with its preprocessing, threshold, temperature,
class names and microns per pixel in the file's metadata, checked against PyTorch on real
patches (--data) or synthetic ones, and MODEL_CARD.md beside it; or as an int8 model for
``--engine int8`` (--format int8), calibrated on training patches (--calibration)."""

from __future__ import annotations

import argparse

from metastasis.cli.common import add_data_options, progress

ORDER = 50
HELP = "export a checkpoint to ONNX, TorchScript or int8 (with metadata and a model card)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--format", choices=["onnx", "torchscript", "int8"], default="onnx")
    p.add_argument(
        "--out",
        help="file to write (MODEL_CARD.md goes beside it); int8: default the run folder's "
        "model.int8.xml, where --engine int8 looks",
    )
    p.add_argument("--data", help="patches to check the export on (default: synthetic patches)")
    p.add_argument("--split", help="split of --data (default: the only one)")
    p.add_argument("--n-probe", type=int, default=64, help="patches of the parity check")
    p.add_argument(
        "--calibration",
        help="int8: training patches the activation ranges are calibrated on (default: none; "
        "needed with --format int8)",
    )
    p.add_argument("--calibration-split", help="split of --calibration (default: train)")
    p.add_argument(
        "--n-calibration", type=int, default=300, help="int8: calibration patches (spread evenly)"
    )
    p.add_argument("--no-model-card", action="store_true", help="do not write MODEL_CARD.md")
    add_data_options(p)


def run(args: argparse.Namespace) -> int:
    from metastasis.errors import MetastasisError

    if args.format == "int8":
        return _int8(args)
    if args.out is None:
        raise MetastasisError(f"--out: give the file to write the {args.format} export to")
    from metastasis.export.bundle import TOLERANCE, export_checkpoint

    result = export_checkpoint(
        args.checkpoint,
        args.out,
        args.format,
        data=args.data,
        split=args.split,
        n_probe=args.n_probe,
        cache_dir=args.cache_dir,
        progress=progress(args),
        model_card=not args.no_model_card,
    )
    print(
        f"parity on {result.probe}: max abs logit difference from PyTorch "
        f"{result.max_abs_diff:.2e} (limit {TOLERANCE:g})"
    )
    print(f"wrote {result.path}" + (f" and {result.model_card}" if result.model_card else ""))
    return 0


def _int8(args: argparse.Namespace) -> int:
    from metastasis.errors import MetastasisError

    if args.calibration is None:
        raise MetastasisError(
            "--format int8 needs --calibration: training patches to calibrate the activations on"
        )
    from metastasis.export.quantize import quantize_checkpoint

    result = quantize_checkpoint(
        args.checkpoint,
        args.calibration,
        args.out,
        calibration_split=args.calibration_split,
        n_calibration=args.n_calibration,
        data=args.data,
        split=args.split,
        n_probe=args.n_probe,
        cache_dir=args.cache_dir,
        progress=progress(args),
        model_card=not args.no_model_card,
    )
    print(f"{result.runtime}, calibrated on {result.calibration}: {result.parity.text()}")
    print(f"wrote {result.path} and {result.path.with_suffix('.bin')}")
    return 0
