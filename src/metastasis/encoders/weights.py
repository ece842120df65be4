"""An encoder's weights from a local file, offline: find, identify (SHA-256) and read them.

Weights come from ``--weights PATH`` (a ``.safetensors``, ``.bin`` or ``.pth`` file, or a folder
holding one) or, without it, from the local Hugging Face cache of the encoder's ``hub_id``
(``huggingface_hub.try_to_load_from_cache``: a look in the cache folder, never a request).
Nothing here opens a network connection; a missing file or a hash that does not match is one
line saying where to put the file. ``random`` builds the architecture with random weights (for
timing and tests: its embeddings are meaningless).

Checkpoints record the path and the SHA-256 of the file they were trained on; when that path
is gone (another machine), the file is looked for by name in ``$METASTASIS_WEIGHTS_DIR``
(and its ``ENCODER/`` sub-folder), then in the Hugging Face cache, and must have the same hash.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metastasis.encoders.registry import EncoderSpec
from metastasis.errors import MetastasisError, first_line
from metastasis.io import sha256_file

RANDOM = "random"
WEIGHTS_DIR_ENV = "METASTASIS_WEIGHTS_DIR"
SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
_NOTICES: set[str] = set()


@dataclass(frozen=True)
class Weights:
    """A weight file and its SHA-256 (``path`` None: random weights)."""

    path: Path | None
    sha256: str | None

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else RANDOM


def _where(spec: EncoderSpec) -> str:
    hub = f" (published as {spec.hub_id}" + (f"/{spec.weight_file}" if spec.weight_file else "")
    hub = hub + ")" if spec.hub_id else ""
    return (
        f"pass --weights PATH (a .safetensors/.bin/.pth file or a folder holding one){hub}, "
        f"or put it in ${WEIGHTS_DIR_ENV}/{spec.name}/"
    )


def _file_in(folder: Path, spec: EncoderSpec) -> Path | None:
    """The weight file in a folder: the spec's file name, else the one weight file there."""
    names = [spec.weight_file] if spec.weight_file else []
    names += ["model.safetensors", "pytorch_model.bin"]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())
    return found[0] if len(found) == 1 else None


def _cached(spec: EncoderSpec) -> Path | None:
    """The weight file in the local Hugging Face cache (no network: a look in the folder)."""
    if not spec.hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in filter(None, [spec.weight_file, "model.safetensors", "pytorch_model.bin"]):
        hit = try_to_load_from_cache(spec.hub_id, name)
        if isinstance(hit, str):
            return Path(hit)
    return None


def resolve_weights(
    spec: EncoderSpec, weights: str | os.PathLike[str] | None, sha256: str | None = None
) -> Weights:
    """Find the weight file (see the module doc) and check its SHA-256 against ``sha256`` (a
    checkpoint's record) or the spec's published one; one-line errors say where to put it."""
    if str(weights) == RANDOM:
        return Weights(None, None)
    path = _locate(spec, Path(weights) if weights else None)
    digest = sha256_file(path)
    expected = sha256 or spec.sha256
    if expected and digest != expected:
        raise MetastasisError(
            f"{path}: SHA-256 {digest[:12]}... is not the expected {expected[:12]}... of "
            f"{spec.name}'s weights; {_where(spec)}"
        )
    notice_licence(spec)
    return Weights(path, digest)


def _locate(spec: EncoderSpec, given: Path | None) -> Path:
    candidates: list[Path] = []
    if given is not None:
        if given.is_dir():
            hit = _file_in(given, spec)
            if hit is None:
                raise MetastasisError(
                    f"{given}: no single weight file ({', '.join(SUFFIXES)}) in this folder "
                    f"for {spec.name}; {_where(spec)}"
                )
            return hit
        if given.is_file():
            return given
        candidates.append(given)
    env = os.environ.get(WEIGHTS_DIR_ENV)
    if env:
        for folder in (Path(env) / spec.name, Path(env)):
            if given is not None and (folder / given.name).is_file():
                return folder / given.name
            if given is None and folder.is_dir() and (hit := _file_in(folder, spec)):
                return hit
    cached = _cached(spec)
    if cached is not None:
        return cached
    missing = str(candidates[0]) if candidates else f"{spec.name}: no weight file given"
    return _missing(missing, spec)


def _missing(what: str, spec: EncoderSpec) -> Path:
    raise MetastasisError(f"{what}: no such file; {_where(spec)}")


def notice_licence(spec: EncoderSpec) -> None:
    """Print a non-commercial (or unverified) licence once per process, on stderr."""
    if spec.name in _NOTICES or not (spec.noncommercial or not spec.licence_verified):
        return
    _NOTICES.add(spec.name)
    kind = "non-commercial licence" if spec.noncommercial else "licence (not verified here)"
    print(
        f"note: {spec.name}'s weights are under a {kind}: {spec.licence}; "
        "it is recorded in every checkpoint and model card built on them",
        file=sys.stderr,
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a torch checkpoint (``weights_only``: no code runs);
    a nested ``state_dict``/``model`` entry, and ``module.`` prefixes, are unwrapped."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or foreign files fail in many ways
        raise MetastasisError(f"{path}: not a readable weight file ({first_line(exc)})") from None
    for key in ("state_dict", "model", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MetastasisError(f"{path}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}
