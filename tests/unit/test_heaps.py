"""A writer's threads allocating beside the fold got malloc arenas of their own from glibc,
each keeping what was freed into it (a 1M rebuild's peak RSS ~30 MiB higher than with
MALLOC_ARENA_MAX=2). A Kafka log bounds the process's heaps before its threads start."""

from __future__ import annotations

import platform
import sys

import pytest

from consumers import heaps

glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not glibc, reason="mallopt's arena bound is glibc's")
def test_the_heaps_are_bounded_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert heaps.bound_heaps()
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not heaps.bound_heaps()


def test_a_kafka_log_bounds_the_heaps_when_made(monkeypatch: pytest.MonkeyPatch) -> None:
    from consumers import kafka_log

    calls: list[bool] = []
    monkeypatch.setattr(kafka_log, "bound_heaps", lambda: calls.append(True) or True)
    kafka_log.KafkaLog(["127.0.0.1:1"])  # nothing is connected until used
    assert calls == [True]
