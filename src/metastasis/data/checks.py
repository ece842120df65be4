"""`metastasis check`: an integrity report over every split of a data set.

It reuses the cache (decoding happens once, there), so checking a large set twice is instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.data.cache import CachedSplit, duplicate_groups, open_cache
from metastasis.data.layouts import open_layout
from metastasis.data.listing import Finding


@dataclass
class SplitReport:
    split: str
    labelled: bool
    n_usable: int
    class_counts: dict[str, int]
    findings: list[Finding]

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "labelled": self.labelled,
            "n_usable": self.n_usable,
            "class_counts": self.class_counts,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class CheckReport:
    path: str
    layout: str
    splits: list[SplitReport]
    findings: list[Finding] = field(default_factory=list)  # across splits

    @property
    def ok(self) -> bool:
        return not self.findings and not any(s.findings for s in self.splits)

    @property
    def n_problems(self) -> int:
        return sum(f.count for f in self.findings) + sum(
            f.count for s in self.splits for f in s.findings
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "layout": self.layout,
            "ok": self.ok,
            "splits": [s.to_dict() for s in self.splits],
            "findings": [f.to_dict() for f in self.findings],
        }

    def format_text(self) -> str:
        lines = [f"{self.path} ({self.layout} layout)"]
        for s in self.splits:
            if s.labelled:
                counts = ", ".join(f"label {k}: {v}" for k, v in s.class_counts.items())
                lines.append(f"  {s.split}: {s.n_usable} labelled patches ({counts})")
            else:
                lines.append(f"  {s.split}: {s.n_usable} unlabelled patches")
            lines += _finding_lines(s.findings, indent="    ")
        lines += _finding_lines(self.findings, indent="  ")
        lines.append("No problems found." if self.ok else f"Problems found: {self.n_problems}.")
        return "\n".join(lines)


def _finding_lines(findings: list[Finding], indent: str) -> list[str]:
    lines = []
    for f in findings:
        lines.append(f"{indent}{f.kind}: {f.count} - {f.description}")
        more = f" (+{f.count - len(f.examples)} more)" if f.count > len(f.examples) else ""
        if f.examples:
            lines.append(f"{indent}  e.g. {', '.join(f.examples[:5])}{more}")
    return lines


def check_dataset(
    path: str | Path,
    split: str | None = None,
    cache_root: Path | None = None,
    progress: bool = True,
) -> CheckReport:
    """Check every split of ``path`` (or only ``split``)."""
    layout = open_layout(path)
    names = [layout.choose_split(split, ())] if split else layout.splits
    cached = [open_cache(layout.listing(s), cache_root, progress=progress) for s in names]
    reports = [split_report(c) for c in cached]
    return CheckReport(str(path), layout.kind, reports, cross_split_findings(cached))


def split_report(cached: CachedSplit) -> SplitReport:
    return SplitReport(
        cached.meta["split"],
        cached.labelled,
        int(cached.ok.sum()),
        cached.class_counts(),
        cached.findings(),
    )


def cross_split_findings(cached: list[CachedSplit]) -> list[Finding]:
    """Identical pixels in two different splits: leakage between training and evaluation."""
    if len(cached) < 2:
        return []
    digests = np.concatenate([c.digests[c.ok] for c in cached])
    names = np.concatenate(
        [
            np.array([_in_split(c.meta["split"], s) for s in c.sources[c.ok]], dtype=object)
            for c in cached
        ]
    )
    groups = [g for g in duplicate_groups(digests, names) if len({n.split("/")[0] for n in g}) > 1]
    if not groups:
        return []
    return [
        Finding(
            "duplicate_across_splits",
            len(groups),
            [" = ".join(g[:3]) for g in groups[:10]],
            "identical patches in more than one split (leakage)",
        )
    ]


def _in_split(split: str, source: str) -> str:
    """``split/source``, unless the source already starts with its split (Kaggle's train/x.tif)."""
    return source if source.startswith(f"{split}/") else f"{split}/{source}"
