"""Shared fixtures: the log under test, parametrised over every adapter.

Kafka tests need a real broker; `make test` starts one (scripts/kafka.sh) and exports
JOURNEY_TEST_KAFKA=host:port. When that variable is set and the broker does not answer,
the Kafka tests FAIL rather than skip: CI must never go green without them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.log import Log


def kafka_bootstrap() -> str | None:
    return os.environ.get("JOURNEY_TEST_KAFKA") or None


@pytest.fixture
def unique_topic() -> str:
    return f"test.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def embedded_log(tmp_path: Path) -> Iterator[Log]:
    from consumers.embedded_log import EmbeddedLog

    log = EmbeddedLog(str(tmp_path / "log.db"))
    yield log
    log.close()


@pytest.fixture
def kafka_log() -> Iterator[Log]:
    bootstrap = kafka_bootstrap()
    if bootstrap is None:
        pytest.skip("JOURNEY_TEST_KAFKA not set; run `make test` to start a real Kafka")
    from consumers.kafka_log import KafkaLog

    log = KafkaLog([bootstrap])
    yield log
    log.close()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def log(request: pytest.FixtureRequest) -> Log:
    """The log under test: every test using it runs once per adapter."""
    fixture: Log = request.getfixturevalue(f"{request.param}_log")
    return fixture
