"""The engine's knobs come from the settings (journey/settings.py), checked once, and are
passed down: the store no longer reads JOURNEY_CACHE_SIZE / JOURNEY_CACHE_WEIGHT from the
environment itself (a bad value there crashed any library user's open with int()'s
ValueError, and a Settings object's own values were ignored), and the test-only chaos hook
is checked where a runner is made."""

from __future__ import annotations

from pathlib import Path

import pytest

import consumers.runner
from consumers.embedded_log import EmbeddedLog
from consumers.runner import Runner
from domain.errors import JourneyError
from journey.pipeline import Pipeline
from journey.settings import Settings
from projections.store import JourneyStore

TOPIC = "journey.touchpoints"


def test_the_store_leaves_the_environment_to_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNEY_CACHE_WEIGHT", "abc")
    monkeypatch.setenv("JOURNEY_CACHE_SIZE", "-5")
    store = JourneyStore(tmp_path / "views.db")  # before: int("abc") raised ValueError
    try:
        assert store.cache_bounds == (20_000, 300_000)
    finally:
        store.close()


def test_the_pipeline_takes_the_cache_bounds_it_is_given(tmp_path: Path) -> None:
    """What the shell passes (run, serve, rebuild, demo: settings.cache_size/_weight) is
    what the writer's store is bounded by, also after a blue-green swap."""
    settings = Settings(
        broker=f"embedded://{tmp_path / 'log.db'}",
        store=f"sqlite:///{tmp_path / 'views.db'}",
        cache_size=7,
        cache_weight=70,
    )
    log = EmbeddedLog(str(tmp_path / "log.db"))
    pipeline = Pipeline(
        log,
        settings.store_address(),
        topic=TOPIC,
        cache_size=settings.cache_size,
        cache_weight=settings.cache_weight,
    )
    try:
        assert pipeline.runner.store.cache_bounds == (7, 70)
    finally:
        pipeline.close()
        log.close()


@pytest.mark.parametrize("value", ["abc", "-5", "1.5", "99999999"])
def test_the_chaos_hook_is_checked_when_a_runner_is_made(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNEY_CHAOS_FOLD_DELAY_MS", value)
    monkeypatch.setattr(consumers.runner, "_FOLD_DELAY_S", None)
    log = EmbeddedLog(str(tmp_path / "log.db"))
    try:
        with pytest.raises(JourneyError, match=r"JOURNEY_CHAOS_FOLD_DELAY_MS: a test-only"):
            Runner(log, tmp_path / "views.db", topic=TOPIC, dlq_topic=f"{TOPIC}.dlq")
    finally:
        log.close()


def test_the_chaos_hook_in_whole_milliseconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNEY_CHAOS_FOLD_DELAY_MS", "20")
    monkeypatch.setattr(consumers.runner, "_FOLD_DELAY_S", None)
    from consumers.runner import fold_delay_s

    assert fold_delay_s() == 0.02
    monkeypatch.delenv("JOURNEY_CHAOS_FOLD_DELAY_MS")
    assert fold_delay_s() == 0.0


@pytest.mark.parametrize(
    ("value", "seen"), [("debug", "debug"), (" DEBUG ", "debug"), ("loud", None), ("", None)]
)
def test_the_log_level_alone_is_read_as_the_settings_read_it(
    value: str, seen: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a traceback is wanted is asked also when other settings did not validate."""
    from journey.settings import log_level_alone

    monkeypatch.setenv("JOURNEY_LOG_LEVEL", value)
    monkeypatch.setenv("JOURNEY_CACHE_WEIGHT", "abc")
    assert log_level_alone() == seen


def test_a_kafka_logs_fetch_size_comes_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from consumers.kafka_log import KafkaLog

    # No broker is reached: a KafkaLog makes its clients on first use.
    default = Settings(broker="kafka://127.0.0.1:1").open_log()
    monkeypatch.setenv("JOURNEY_KAFKA_FETCH_KIB", "64")
    told = Settings(broker="kafka://127.0.0.1:1").open_log()
    try:
        assert isinstance(default, KafkaLog) and isinstance(told, KafkaLog)
        assert default.partition_fetch_bytes == 1024 * 1024
        assert told.partition_fetch_bytes == 64 * 1024
    finally:
        default.close()
        told.close()
    monkeypatch.setenv("JOURNEY_KAFKA_FETCH_KIB", "0")
    with pytest.raises(ValueError, match="kafka_fetch_kib"):
        Settings()


def test_a_rebuild_folds_on_two_processes_by_default_where_there_are_two_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unset, JOURNEY_REBUILD_PROCESSES leaves it to the rebuild: two processes on a machine
    with two cores or more (never more than the topic's partitions; more would each hold
    less of the cache budget), one on a single core; a number given is kept, 1 included."""
    from consumers import rebuild

    monkeypatch.delenv("JOURNEY_REBUILD_PROCESSES", raising=False)
    assert Settings().rebuild_processes is None
    monkeypatch.setenv("JOURNEY_REBUILD_PROCESSES", "1")
    assert Settings().rebuild_processes == 1
    for cores, partitions, expected in ((8, 6, 2), (2, 6, 2), (1, 6, 1), (8, 1, 1)):
        monkeypatch.setattr(rebuild.os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert rebuild.default_processes(partitions) == expected
