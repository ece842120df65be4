"""What a study leaves: :class:`TuneResult` (built by :mod:`.report`, returned by ``tune``).

Its own module so that the search and the report both import it and not each other.
"""

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
