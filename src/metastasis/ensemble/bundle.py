"""Member checkpoints -> one ``ensemble`` checkpoint bundle (no files written here).

Members must take the same input (one preprocessing: input size, mean/std, microns per pixel,
stain normalisation reference), have the same class names, and all be trained on real data or
all on the synthetic drawings: otherwise the first member that differs is refused in one line
naming its run and what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metastasis.checkpoint import Bundle, checkpoint_path, load_checkpoint
from metastasis.errors import CheckpointError

Member = tuple[str, Bundle]  # (the run as given, its bundle)


def load_members(runs: Sequence[str | Path]) -> list[Member]:
    """Each run's checkpoint (``load_checkpoint``: checked and probed), checked together."""
    if len(runs) < 2:
        raise CheckpointError(f"an ensemble needs at least two runs, got {len(runs)}")
    seen: dict[Path, str] = {}
    members = []
    for run in runs:
        bundle = load_checkpoint(run)
        key = checkpoint_path(run).resolve()
        if key in seen:
            raise CheckpointError(f"{run}: given twice (as {seen[key]} too)")
        seen[key] = str(run)
        members.append((str(run), bundle))
    check_members(members)
    return members


def check_members(members: Sequence[Member]) -> None:
    """Refuse the first member whose input, class names or data kind differ from member 0's."""
    first, b0 = members[0]
    p0 = b0.preprocessing.to_dict()
    for name, b in members[1:]:
        p = b.preprocessing.to_dict()
        for key in p0:
            if p.get(key) != p0[key]:
                mine, theirs = _shown(key, p.get(key), p0[key])
                raise CheckpointError(
                    f"{name}: preprocessing.{key} is {mine}, {first}'s is {theirs}: an "
                    "ensemble's members must take the same input"
                )
        if tuple(b.class_names) != tuple(b0.class_names):
            raise CheckpointError(
                f"{name}: class names {list(b.class_names)} differ from {first}'s "
                f"{list(b0.class_names)}"
            )
        if b.synthetic != b0.synthetic:
            kind = "the synthetic drawings" if b.synthetic else "real patches"
            raise CheckpointError(
                f"{name}: trained on {kind}, unlike {first}: an ensemble's members are all "
                "trained on real patches or all on synthetic ones"
            )


def _shown(key: str, mine: Any, theirs: Any) -> tuple[str, str]:
    """Two differing preprocessing values as words (a stain reference by its method)."""
    if key != "stain":
        return repr(mine), repr(theirs)
    a = mine.get("method") if isinstance(mine, dict) else None
    b = theirs.get("method") if isinstance(theirs, dict) else None
    if a == b:
        return f"a {a} reference", f"another {a} reference"
    return a or "none", b or "none"


def common_tta(members: Sequence[Member]) -> str:
    """The members' test-time augmentation when they all have the same, else ``none``."""
    modes = {b.tta for _, b in members}
    return modes.pop() if len(modes) == 1 else "none"


def member_specs(members: Sequence[Member]) -> list[dict[str, Any]]:
    """The ``ensemble`` family's ``members`` argument."""
    return [
        {"arch": b.arch, "arch_kwargs": dict(b.arch_kwargs), "temperature": float(b.temperature)}
        for _, b in members
    ]


def ensemble_bundle(
    members: Sequence[Member],
    threshold: float | None = None,
    tta: str | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Bundle:
    """The ``ensemble`` bundle of checked members: their weights under ``members.<i>.``, their
    temperatures inside the model (its own is 1), member 0's preprocessing and class names;
    ``threshold`` defaults to the mean of the members' thresholds, ``tta`` to `common_tta`."""
    check_members(members)
    state = {
        f"members.{i}.{k}": v for i, (_, b) in enumerate(members) for k, v in b.state_dict.items()
    }
    b0 = members[0][1]
    if threshold is None:
        threshold = sum(b.threshold for _, b in members) / len(members)
    return Bundle(
        arch="ensemble",
        arch_kwargs={"members": member_specs(members)},
        state_dict=state,
        preprocessing=b0.preprocessing,
        threshold=float(threshold),
        temperature=1.0,
        tta=tta or common_tta(members),
        class_names=tuple(b0.class_names),
        config=dict(config or {}),
        metrics=dict(metrics or {}),
        synthetic=b0.synthetic,
    )
