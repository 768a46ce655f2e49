"""Fixtures of the integration tests: ``broker`` (a Kafka broker of the module's own),
``kcat`` (the binary; its absence fails in CI) and ``klog`` (the Kafka log under test)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from consumers.kafka_log import KafkaLog
from consumers.log import Log
from tests.integration.own_broker import broker

__all__ = ["broker", "kcat", "klog"]


@pytest.fixture
def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        message = "kcat not found: apt-get install -y kcat"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return path


@pytest.fixture
def klog(kafka_log: Log) -> Iterator[KafkaLog]:
    assert isinstance(kafka_log, KafkaLog)
    yield kafka_log
