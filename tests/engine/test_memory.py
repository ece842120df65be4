import sys

import pytest

from metastasis.engine.memory import fix_mmap_threshold


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_fixing_the_mmap_threshold_succeeds_on_glibc() -> None:
    assert fix_mmap_threshold(1 << 20) is True


def test_other_platforms_report_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert fix_mmap_threshold() is False
