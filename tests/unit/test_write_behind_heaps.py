"""The writer thread of a write-behind store allocates beside the fold: glibc then gave it
malloc arenas of its own, each keeping what was freed into it (a 1M rebuild's peak RSS ~30
MiB higher than with MALLOC_ARENA_MAX=2). The first hand-over bounds the process's heaps."""

from __future__ import annotations

import platform
import sys

import pytest

from projections import write_behind

glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not glibc, reason="mallopt's arena bound is glibc's")
def test_the_heaps_are_bounded_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert write_behind.bound_heaps()
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not write_behind.bound_heaps()


def test_the_first_hand_over_bounds_the_heaps_before_the_writer_thread_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(write_behind, "bound_heaps", lambda: calls.append(True) or True)
    behind = write_behind.WriteBehind()
    try:
        for _ in range(3):
            behind.submit(lambda: None, undo=lambda: None, what="nothing", applied=0)
        behind.settle()
    finally:
        behind.close()
    assert calls == [True]
