import sys

import pytest

from metastasis.memory import configure_malloc, fix_mmap_threshold


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_fixing_the_mmap_threshold_succeeds_on_glibc() -> None:
    assert fix_mmap_threshold(1 << 20) is True


def test_other_platforms_report_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert fix_mmap_threshold() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_malloc_strategy_defaults_to_glibc_and_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("METASTASIS_MALLOC", raising=False)
    assert configure_malloc() == "glibc"
    monkeypatch.setenv("METASTASIS_MALLOC", "mmap")
    assert configure_malloc() == "mmap"
    assert configure_malloc("glibc") == "glibc"  # an explicit choice beats the environment
    monkeypatch.setenv("METASTASIS_MALLOC", "jemalloc")
    with pytest.raises(ValueError, match="METASTASIS_MALLOC"):
        configure_malloc()


def test_without_glibc_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert configure_malloc("mmap") == "glibc"
