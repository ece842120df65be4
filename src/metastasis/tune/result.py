"""What a study returns: where it is, how many trials ended how, and the best one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TuneResult:
    study_dir: Path
    study_name: str
    counts: dict[str, int]  # trials per state
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
