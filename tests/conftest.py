"""Shared fixtures: the log under test, parametrised over every adapter.

Kafka tests need a real broker; `make test` starts one (scripts/kafka.sh) and exports
JOURNEY_TEST_KAFKA=host:port. When that variable is set and the broker does not answer,
the Kafka tests FAIL rather than skip: CI must never go green without them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from consumers.log import Log


def kafka_bootstrap() -> str | None:
    return os.environ.get("JOURNEY_TEST_KAFKA") or None


# The topics this session named: deleted (with their companions, `<topic>.dlq` and the like)
# when the session ends. A developer's broker keeps every topic (infinite retention), and a
# full run names thousands: after a few runs the broker ran out of file descriptors (19,382
# partition directories, "Too many open files") and shut down. Only this session's own
# topics go: another session may be running against the same broker.
_NAMED_TOPICS: set[str] = set()


@pytest.fixture
def unique_topic() -> str:
    name = f"test.{uuid.uuid4().hex[:12]}"
    _NAMED_TOPICS.add(name)
    return name


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    bootstrap = kafka_bootstrap()
    if bootstrap is None or not _NAMED_TOPICS:
        return
    with contextlib.suppress(Exception):  # tidying up: never turns a run red
        admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=10_000)
        try:
            ours = sorted(
                t
                for t in admin.list_topics()
                if ".".join(t.split(".")[:2]) in _NAMED_TOPICS  # test.<id> and test.<id>.*
            )
            for start in range(0, len(ours), 200):
                with contextlib.suppress(Exception):
                    admin.delete_topics(ours[start : start + 200], timeout_ms=30_000)
        finally:
            admin.close()


@pytest.fixture
def embedded_log(tmp_path: Path) -> Iterator[Log]:
    from consumers.embedded_log import EmbeddedLog

    log = EmbeddedLog(str(tmp_path / "log.db"))
    yield log
    log.close()


def own_groups_kafka_log(bootstrap: str) -> Log:
    """A Kafka log on the shared test broker whose consumer groups are this log's own.

    Every test ``Pipeline`` and ``Runner`` joins the engine's default group (``journey-views``)
    unless told otherwise, and on a broker shared by concurrent test sessions they all joined
    that one group: each test's join rebalanced every other session's members, and a member
    caught in a rebalance sometimes hits the kafka-python 3.0.12 join bug consumers/kafka_log.py
    describes (it stays without partitions: "not caught up within 60 s"). Here a group named
    ``G`` is ``G.<this log's id>`` on the broker; a consumer outside any group stays outside."""
    from consumers.kafka_log import KafkaConsumerAdapter, KafkaLog

    class OwnGroupsKafkaLog(KafkaLog):
        def __init__(self, servers: list[str]) -> None:
            super().__init__(servers)
            self.group_suffix = f".{uuid.uuid4().hex[:12]}"

        def consumer(
            self, group_id: str | None, topics: Sequence[str], **options: Any
        ) -> KafkaConsumerAdapter:
            if group_id:  # None (no group) and "" (an error the log reports) stay as they are
                group_id += self.group_suffix
            return super().consumer(group_id, topics, **options)

    return OwnGroupsKafkaLog([bootstrap])


@pytest.fixture
def kafka_log() -> Iterator[Log]:
    bootstrap = kafka_bootstrap()
    if bootstrap is None:
        pytest.skip("JOURNEY_TEST_KAFKA not set; run `make test` to start a real Kafka")
    log = own_groups_kafka_log(bootstrap)
    yield log
    log.close()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def log(request: pytest.FixtureRequest) -> Log:
    """The log under test: every test using it runs once per adapter."""
    fixture: Log = request.getfixturevalue(f"{request.param}_log")
    return fixture


# -- the real broker: named in the test log, and its absence is a failure ----------------------

_REPO = Path(__file__).resolve().parents[1]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@functools.cache
def _kafka_broker_check() -> tuple[str | None, str | None]:
    """(description, error) of the broker JOURNEY_TEST_KAFKA names; asked once per session.

    The version comes from .cache/kafka/VERSION when that broker is the one `make kafka`
    started (same cluster id as .cache/kafka/data); otherwise only the protocol generation
    kafka-python negotiated is known.
    """
    bootstrap = kafka_bootstrap()
    result: tuple[str | None, str | None]
    if bootstrap is None:
        result = (None, None)
    else:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=[bootstrap],
                client_id="journey-tests-probe",
                bootstrap_timeout_ms=5_000,
                request_timeout_ms=5_000,
            )
            try:
                cluster = admin.describe_cluster()
                protocol = ".".join(map(str, admin._manager.broker_version))
            finally:
                admin.close()
        except Exception as exc:
            result = (
                None,
                f"JOURNEY_TEST_KAFKA={bootstrap} is set but no Kafka broker answers there "
                f"({exc}). Start one with `make kafka` (or unset the variable to skip the "
                "Kafka tests outside CI).",
            )
        else:
            state = _REPO / ".cache" / "kafka"
            meta = state / "data" / "meta.properties"
            version_file = state / "VERSION"
            ours = meta.is_file() and f"cluster.id={cluster['cluster_id']}" in meta.read_text()
            if ours and version_file.is_file():
                name = f"Apache Kafka {version_file.read_text().strip()}"
            else:
                name = f"Kafka (protocol {protocol}; not started by `make kafka`, release unknown)"
            result = (f"{name} at {bootstrap}, cluster {cluster['cluster_id']}", None)
    return result


def pytest_report_header(config: pytest.Config) -> str:
    described, error = _kafka_broker_check()
    if described:
        return f"kafka broker: {described}"
    return f"kafka broker: NONE ({error or 'JOURNEY_TEST_KAFKA not set: Kafka tests skip'})"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A Kafka or kcat test FAILS when its broker does not answer, and in CI also when
    JOURNEY_TEST_KAFKA is missing: a green run must have run them."""
    if item.get_closest_marker("kafka") is None and item.get_closest_marker("kcat") is None:
        return
    if kafka_bootstrap() is None:
        if _in_ci():
            pytest.fail("CI=true but JOURNEY_TEST_KAFKA is not set: run the tests with `make test`")
        return
    _, error = _kafka_broker_check()
    if error:
        pytest.fail(error)


# -- the store under test: SQLite, and a real PostgreSQL ----------------------------------------


def postgres_url() -> str | None:
    return os.environ.get("JOURNEY_TEST_POSTGRES") or None


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL JOURNEY_TEST_POSTGRES names (`make test`
    starts one with scripts/postgres.sh), as a store URL; dropped afterwards."""
    url = postgres_url()
    if url is None:
        if _in_ci():
            pytest.fail(
                "CI=true but JOURNEY_TEST_POSTGRES is not set: run the tests with `make test`"
            )
        pytest.skip("JOURNEY_TEST_POSTGRES not set; run `make test` to start a local PostgreSQL")
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"JOURNEY_TEST_POSTGRES={url} is set but PostgreSQL does not answer: {exc}")
    base, _, _ = url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_store() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_address(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where the store under test lives: every test using it runs once per store."""
    if request.param == "sqlite":
        return tmp_path / "views.db"
    url: str = request.getfixturevalue("postgres_store")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def new_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], Path | str]]:
    """Makes fresh stores of one kind (``new_store("views1")``); every test using it runs
    once per store kind. PostgreSQL databases are dropped afterwards."""
    with contextlib.ExitStack() as stack:

        def make(name: str) -> Path | str:
            if request.param == "sqlite":
                return tmp_path / f"{name}.db"
            url: str = stack.enter_context(fresh_postgres_database())
            return url

        yield make
