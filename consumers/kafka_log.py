"""The Kafka log: the :class:`~consumers.log.Log` port on Apache Kafka (kafka-python 3).

What this adapter adds to plain kafka-python, so the same code and the same contract suite
run on Kafka and on the embedded log:

* one idempotent producer (``acks="all"``) per log, created on first use; a produce sends
  the whole batch, flushes, and returns the positions the broker acknowledged, in input
  order. The partition is chosen as by kafka-python's default partitioner (murmur2 of the
  key, as the Java client; the hash of recent keys kept), which
  :meth:`KafkaLog.partition_for` reproduces exactly, unless the message names its
  partition (a partition the topic does not have fails the batch before anything is sent);
* topics are never created by accident: producing to a topic that does not exist raises
  :class:`LogError` at once (metadata is checked first) instead of blocking for
  ``max_block_ms``; :meth:`KafkaLog.ensure_topics` creates them with infinite retention;
* every kafka-python error becomes a :class:`LogError` that names the topic or the
  bootstrap servers and says what to do: :class:`LogUnavailable` when the broker did not
  answer (transient: retry), :class:`CommitRefused` when the group refused a commit after
  a rebalance (re-read from the store's positions), plain :class:`LogError` otherwise;
* the broker may go away at any time and come back: the producer, the offset reader and
  the admin client each have their own lock, so a slow offset look-up never holds up a
  produce; a client whose call failed is dropped and made anew on the next call, at most
  every few seconds (backoff), and says so at most once a minute, not once per attempt.

Consumers commit only explicitly. ``on_assign`` runs on the caller's thread inside
:meth:`KafkaConsumerAdapter.poll`, never on kafka-python's IO thread (where a rebalance
listener runs and must not block heartbeats): a newly assigned partition is paused until
``on_assign`` has said where it starts, so no message of it is returned before that.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import structlog
from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
)
from kafka import TopicPartition as KafkaTopicPartition
from kafka import errors as kafka_errors
from kafka.partitioner import DefaultPartitioner, Partitioner
from kafka.partitioner.default import murmur2
from kafka.structs import MemberState

from consumers.heaps import bound_heaps
from consumers.log import (
    CommitRefused,
    Headers,
    Log,
    LogConsumer,
    LogError,
    LogUnavailable,
    Message,
    OnAssign,
    OutgoingMessage,
    Position,
    TopicPartition,
    check_partitions,
)

__all__ = [
    "DEFAULT_PARTITION_FETCH_BYTES",
    "KafkaConsumerAdapter",
    "KafkaLog",
    "KafkaSecurity",
    "KeyHashPartitioner",
    "key_hash",
]

logger = structlog.get_logger(__name__)

_T = TypeVar("_T")

# Kafka error codes met in topic administration.
_NO_ERROR = 0
_UNKNOWN_TOPIC_OR_PARTITION = 3
_TOPIC_ALREADY_EXISTS = 36

# With on_assign, poll waits in slices this long so that partitions assigned during a poll
# are started within the same call.
_ASSIGN_CHECK_MS = 100

# Topics of the log of record keep everything: views are rebuilt by replaying from offset 0.
_INFINITE_RETENTION = {"retention.ms": "-1", "retention.bytes": "-1"}

# High-water marks are asked for on every query without a token: an answer that does not
# come within this long will not come at all (the broker is gone), so say so early.
_OFFSETS_TIMEOUT_S = 3.0

# kafka-python backs off reconnecting up to 30 s by default: a broker that came back would
# wait that long to be used again. One second keeps a reconnect well within 10 s.
_RECONNECT_BACKOFF_MAX_MS = 1000

# What a consumer asks the broker for in one fetch: per partition (kafka-python's default),
# and in all (8 partitions' worth, not kafka-python's 50 MB). 256 KiB holds less in fetched
# records (a one-process 1M rebuild peaked at 266 MiB against 291-302) but costs CPU: +5 %
# in one process, and on the two processes of a rebuild +82 % at 0.45x the rate (271
# against 149 CPU s at 1M, session 16, run V; docs/BENCHMARKS.md). A fetch still returns
# at least one whole record batch when a batch is larger (KIP-74): nothing stalls.
DEFAULT_PARTITION_FETCH_BYTES = 1024 * 1024
_FETCH_PARTITIONS = 8  # a fetch's bound: this many partitions' worth
# A poll behind the head gathers records from further fetches until its batch is full, for
# at most this long (or its timeout, when longer): see KafkaConsumerAdapter.poll.
_FILL_WAIT_S = 0.5

# After a client failed, it is made anew at the next call, but not sooner than this backoff
# (doubling from the first, up to the last) since the previous attempt.
_RECREATE_BACKOFF_S = (0.5, 4.0)

# A client that keeps failing says so at most this often.
_WARN_EVERY_S = 60.0

# Errors that mean "the group moved on without this member": its commit cannot be made.
_COMMIT_REFUSED = (
    kafka_errors.CommitFailedError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.IllegalGenerationError,
    kafka_errors.UnknownMemberIdError,
    kafka_errors.FencedInstanceIdError,
)


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """Kafka's default partitioner for a keyed message (the Java client's and kafka-python's
    ``DefaultPartitioner``)."""
    return key_hash(bytes(key)) % num_partitions


@functools.lru_cache(maxsize=1 << 16)  # ~64k customers' keys: a few MiB at most
def key_hash(key: bytes) -> int:
    """murmur2 of a message key as Kafka's default partitioner uses it (non-negative).
    Kept for recent keys: kafka-python computes it in pure Python, about a tenth of the
    cost of producing a record, and a customer's key comes again and again."""
    return int(murmur2(key)) & 0x7FFFFFFF


class KeyHashPartitioner(Partitioner):  # type: ignore[misc]  # kafka-python is untyped
    """kafka-python's ``DefaultPartitioner`` (the Java client's: murmur2 of the key over
    all of the topic's partitions, sorted) with the key's hash kept (:func:`key_hash`);
    a record without a key goes to the default's random choice. Per record it also skips
    the default's copies of the cluster's topic set and available partitions."""

    def __init__(self) -> None:
        self._default = DefaultPartitioner()

    def partition(  # noqa: PLR0917 (kafka-python's signature)
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        partitions = cluster.partitions_for_topic(topic) if serialized_key is not None else None
        if serialized_key is None or not partitions:  # no key, or a topic not in the metadata
            return int(
                self._default.partition(
                    topic, key, serialized_key, value, serialized_value, cluster
                )
            )
        return int(sorted(partitions)[key_hash(bytes(serialized_key)) % len(partitions)])


def _refresh_metadata(producer: Any, timeout_s: float) -> None:
    """Have a producer fetch the cluster's metadata now and wait for it (kafka-python has
    no public call for it: this is what its own wait for an unknown topic's metadata does;
    pyproject pins kafka-python to 3.0.x and tests/unit/test_kafka_python_internals.py fails
    when these internals change)."""
    done = threading.Event()
    future = producer._metadata.request_update()
    future.add_both(lambda *_: done.set())
    producer._sender.wakeup()
    done.wait(timeout_s)


def _acked(future: Any, timeout_s: float) -> Any:
    """The record's metadata once the broker acknowledged it. After a flush every future
    is done: its value is read as it is (``get`` makes a timer per record to wait with);
    one not done (a batch split and sent again) is waited for."""
    if future.is_done and future.exception is None:
        return future.value
    return future.get(timeout=timeout_s)  # raises the record's error, or waits


def _to_kafka(tp: TopicPartition) -> Any:
    return KafkaTopicPartition(tp.topic, tp.partition)


def _from_kafka(tp: Any) -> TopicPartition:
    return TopicPartition(str(tp.topic), int(tp.partition))


SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# Passwords of every KafkaSecurity in use: kafka-python logs its admin client's whole
# configuration (sasl_plain_password included) and, with SASL/PLAIN, the bytes it sends, at
# DEBUG. The filter below blanks them in its records before any handler sees them, whoever
# configured logging (the CLI's redaction covers its own handlers only).
_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        with _SECRETS_LOCK:
            found = [s for s in _SECRETS if s]
        if not found:
            return True
        message = record.getMessage()
        cleaned = message
        for secret in sorted(found, key=len, reverse=True):
            cleaned = cleaned.replace(secret, "***")
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_REDACTING = _RedactSecrets()


def _guard_kafka_loggers(secrets: Sequence[str]) -> None:
    """Remember ``secrets`` and put the filter on every kafka-python logger (a filter on a
    logger applies to its own records only, so each one gets it)."""
    with _SECRETS_LOCK:
        _SECRETS.update(s for s in secrets if s)
    names = [
        n for n in list(logging.root.manager.loggerDict) if n == "kafka" or n.startswith("kafka.")
    ]
    for name in names:
        log = logging.getLogger(name)
        if _REDACTING not in log.filters:
            log.addFilter(_REDACTING)


@dataclass(frozen=True)
class KafkaSecurity:
    """How to reach a secured broker: SASL (PLAIN or SCRAM) and/or TLS.

    ``username``/``password`` authenticate with ``mechanism`` (SASL); ``tls`` encrypts, and
    verifies the broker's certificate against ``ca_file`` (the system's trust store when
    None); ``cert_file``/``key_file`` (``key_password``) present a client certificate when
    the broker asks for one. Passwords are never part of repr, a message or a log line.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    mechanism: SaslMechanism = "PLAIN"
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)

    @property
    def protocol(self) -> str:
        sasl = self.username is not None
        if self.tls:
            return "SASL_SSL" if sasl else "SSL"
        return "SASL_PLAINTEXT" if sasl else "PLAINTEXT"

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.key_password) if s]

    def describe(self) -> str:
        """How this client authenticates, for messages (no secret)."""
        how = f"SASL {self.mechanism} as user {self.username!r}" if self.username else ""
        tls = "TLS" if self.tls else ""
        return " over ".join(p for p in (how, tls) if p) or "no authentication"

    def client_config(self) -> dict[str, Any]:
        """kafka-python's settings for this (producers, consumers and admin clients)."""
        config: dict[str, Any] = {"security_protocol": self.protocol}
        if self.username is not None:
            config.update(
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password or "",
            )
        if self.tls:
            config.update(ssl_check_hostname=True, ssl_cafile=self.ca_file)
            if self.cert_file:
                config.update(
                    ssl_certfile=self.cert_file,
                    ssl_keyfile=self.key_file,
                    ssl_password=self.key_password,
                )
        return config


class KafkaLog:
    """The :class:`~consumers.log.Log` port on Apache Kafka.

    >>> log = KafkaLog(["127.0.0.1:19092"])  # doctest: +SKIP
    >>> log.ensure_topics(["journey.touchpoints", "journey.touchpoints.dlq"], partitions=6)
    ... # doctest: +SKIP

    ``timeout_s`` bounds every blocking call to the broker (bootstrap, metadata, produce
    acknowledgements, offset look-ups). Clients are created on first use, so constructing a
    ``KafkaLog`` never touches the network.
    """

    def __init__(
        self,
        bootstrap_servers: list[str],
        *,
        client_id: str = "journey",
        timeout_s: float = 10.0,
        session_timeout_s: float = 10.0,
        fetch_max_wait_ms: int = 20,
        partition_fetch_bytes: int = DEFAULT_PARTITION_FETCH_BYTES,
        offsets_timeout_s: float = _OFFSETS_TIMEOUT_S,
        sasl: tuple[str, str] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        if not bootstrap_servers:
            raise LogError("KafkaLog needs at least one bootstrap server (host:port)")
        # Before kafka-python's network threads start: each would otherwise get malloc
        # heaps of its own (consumers.heaps).
        bound_heaps()
        if timeout_s <= 0 or offsets_timeout_s <= 0:
            raise LogError(f"timeouts must be positive, got {timeout_s}, {offsets_timeout_s}")
        if partition_fetch_bytes < 1024:
            raise LogError(
                f"a partition's fetch must be at least 1024 bytes, got {partition_fetch_bytes}"
            )
        self.bootstrap_servers = list(bootstrap_servers)
        self.url = "kafka://" + ",".join(self.bootstrap_servers)
        self.client_id = client_id
        self.timeout_ms = int(timeout_s * 1000)
        self.session_timeout_ms = int(session_timeout_s * 1000)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.partition_fetch_bytes = partition_fetch_bytes
        self.offsets_timeout_ms = int(min(offsets_timeout_s, timeout_s) * 1000)
        # SASL and TLS; the passwords are never part of url, repr or a message. ``sasl``
        # (user, password) is SASL/PLAIN, as the broker URL's user:password@ gives it.
        if security is None and sasl is not None:
            security = KafkaSecurity(username=sasl[0], password=sasl[1])
        self._security = security
        if security is not None and security.secrets():
            _guard_kafka_loggers(security.secrets())
        self._closed = False
        # One lock per client: an offset look-up stuck on a broker that went away must
        # never hold up a produce (it did: POST /events waited 13-95 s behind them).
        # The producer reconnects by itself (it did within a second of the broker's return)
        # and holds other callers' messages in flight: dropped only when it broke for good.
        self._producer = _Client(self, "producer", self._new_producer, drop_when_unavailable=False)
        self._admin = _Client(self, "admin client", self._new_admin)
        self._offsets_reader = _Client(self, "offset reader", self._new_offsets_reader)
        self._partition_counts: dict[str, int] = {}
        self._consumers: weakref.WeakSet[KafkaConsumerAdapter] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"KafkaLog({self.url!r})"

    def reopened(self) -> KafkaLog:
        """A log with the same broker and settings and no client yet: what a forked process
        uses (the clients' sockets and threads of this one belong to its parent)."""
        return KafkaLog(
            self.bootstrap_servers,
            client_id=self.client_id,
            timeout_s=self.timeout_ms / 1000,
            session_timeout_s=self.session_timeout_ms / 1000,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            partition_fetch_bytes=self.partition_fetch_bytes,
            offsets_timeout_s=self.offsets_timeout_ms / 1000,
            security=self._security,
        )

    # -- clients -----------------------------------------------------------------------

    def _client_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "request_timeout_ms": self.timeout_ms,
            "bootstrap_timeout_ms": self.timeout_ms,
            "reconnect_backoff_max_ms": _RECONNECT_BACKOFF_MAX_MS,
        }
        if self._security is not None:
            config.update(self._security.client_config())
        return config

    def _clean(self, exc: BaseException) -> str:
        """An exception's text, safe to show: no password ever appears, and it is one line."""
        name, message = type(exc).__name__, str(exc)
        text = message if message.startswith(name) else f"{name}: {message}".rstrip(": ")
        for secret in self._security.secrets() if self._security is not None else []:
            text = text.replace(secret, "***")
        return " ".join(text.split())

    def _unreachable(self, exc: BaseException) -> LogUnavailable:
        security = self._security
        if security is not None and security.protocol != "PLAINTEXT":
            # kafka-python reports refused credentials or an untrusted certificate only as a
            # bootstrap that never completed: name what to check besides the address.
            return LogUnavailable(
                f"Kafka at {', '.join(self.bootstrap_servers)} did not answer or refused the "
                f"connection ({self._clean(exc)}; {security.describe()}). Check the address, "
                "the user name and password (JOURNEY_KAFKA_PASSWORD), the SASL mechanism "
                "(JOURNEY_KAFKA_SASL_MECHANISM) and the CA file (JOURNEY_KAFKA_CA_FILE)."
            )
        return LogUnavailable(
            f"Kafka at {', '.join(self.bootstrap_servers)} did not answer ({self._clean(exc)}). "
            "Is the broker running and the address right? `make kafka` starts a local one."
        )

    def _create(self, what: str, factory: Callable[[], _T]) -> _T:
        if self._closed:
            raise LogError(f"{self!r} is closed")
        try:
            return factory()
        except (kafka_errors.KafkaConnectionError, kafka_errors.KafkaTimeoutError) as exc:
            raise self._unreachable(exc) from None
        except kafka_errors.KafkaError as exc:
            if getattr(exc, "retriable", False):
                raise self._unreachable(exc) from None
            raise LogError(
                f"cannot create the Kafka {what} for {self.url}: {self._clean(exc)}"
            ) from None
        except (OSError, ValueError, AssertionError) as exc:  # DNS, bad config, SASL
            raise LogUnavailable(
                f"cannot create the Kafka {what} for {self.url}: {self._clean(exc)}"
            ) from None

    def _new_admin(self) -> Any:
        return KafkaAdminClient(client_id=f"{self.client_id}-admin", **self._client_config())

    def _new_producer(self) -> Any:
        return KafkaProducer(
            client_id=f"{self.client_id}-producer",
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            partitioner=KeyHashPartitioner(),
            max_block_ms=self.timeout_ms,
            delivery_timeout_ms=max(self.timeout_ms * 3, 30_000),
            **self._client_config(),
        )

    def _new_offsets_reader(self) -> Any:
        """A consumer outside any group, only for offset look-ups (high-water marks)."""
        return KafkaConsumer(
            client_id=f"{self.client_id}-offsets",
            group_id=None,
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            **{
                **self._client_config(),
                "request_timeout_ms": self.offsets_timeout_ms,
                "bootstrap_timeout_ms": self.offsets_timeout_ms,
            },
        )

    def _call(self, what: str, fn: Callable[[], _T], *, commit: bool = False) -> _T:
        """Run a broker call, turning kafka-python's errors into LogError subclasses."""
        try:
            return fn()
        except LogError:
            raise
        except _COMMIT_REFUSED as exc:
            if not commit:
                raise LogError(f"{what} on {self.url} failed: {self._clean(exc)}") from None
            raise CommitRefused(
                f"{what} on {self.url} was refused ({self._clean(exc)}): the group "
                "rebalanced and this member lost partitions; re-read them from the "
                "store's positions"
            ) from None
        except kafka_errors.KafkaConnectionError as exc:
            raise self._unreachable(exc) from None
        except kafka_errors.IllegalStateError as exc:
            raise _Broken(
                f"{what} on {self.url} failed: the Kafka client broke ({self._clean(exc)}); "
                "it is made anew on the next call"
            ) from None
        except kafka_errors.KafkaTimeoutError as exc:
            raise LogUnavailable(
                f"{what} on {self.url} timed out ({self._clean(exc)}); "
                "is the broker overloaded or gone?"
            ) from None
        except kafka_errors.KafkaError as exc:
            if getattr(exc, "retriable", False):
                raise LogUnavailable(
                    f"{what} on {self.url} failed for now ({self._clean(exc)}); retry later"
                ) from None
            raise LogError(f"{what} on {self.url} failed: {self._clean(exc)}") from None
        except (OSError, AssertionError) as exc:  # a socket error kafka-python let through
            raise LogUnavailable(f"{what} on {self.url} failed: {self._clean(exc)}") from None

    @property
    def producer_id(self) -> int | None:
        """The producer id the broker gave the idempotent producer (None before the first
        produce). Diagnostics: a broker that granted idempotence hands out an id >= 0."""
        producer = self._producer.current
        manager = getattr(producer, "_transaction_manager", None)
        if manager is None:
            return None
        pid = int(manager.producer_id_and_epoch.producer_id)
        return pid if pid >= 0 else None

    # -- topics ------------------------------------------------------------------------

    def _describe(self, topics: Sequence[str]) -> dict[str, dict[str, Any]]:
        described = self._admin.run(
            "describing topics", lambda admin: admin.describe_topics(list(topics))
        )
        return {str(t["name"]): t for t in described}

    def ensure_topics(
        self, topics: Sequence[str], partitions: int, *, retention_ms: int | None = None
    ) -> None:
        """Create the topics that do not exist yet, with infinite retention (or, with
        ``retention_ms``, deleting records older than that: segments roll as often, so a
        record's segment can go); existing ones keep their partitions and settings. Returns
        once the broker's metadata shows every topic with a leader for each partition."""
        if partitions < 1:
            raise LogError(f"a topic needs at least one partition, got {partitions}")
        wanted = list(dict.fromkeys(topics))
        if not wanted:
            return
        existing = self._describe(wanted)
        missing = [
            t
            for t in wanted
            if existing.get(t, {}).get("error_code", _UNKNOWN_TOPIC_OR_PARTITION)
            == _UNKNOWN_TOPIC_OR_PARTITION
        ]
        if missing:
            request = {
                t: {
                    "num_partitions": partitions,
                    "replication_factor": -1,  # the broker's default.replication.factor
                    "configs": dict(_INFINITE_RETENTION)
                    if retention_ms is None
                    else {
                        "retention.ms": str(retention_ms),
                        "segment.ms": str(retention_ms),
                        "cleanup.policy": "delete",
                    },
                }
                for t in missing
            }
            result = self._admin.run(
                "creating topics",
                lambda admin: admin.create_topics(
                    request, timeout_ms=self.timeout_ms, raise_errors=False
                ),
            )
            for topic in result["topics"]:
                code = topic["error_code"]
                if code == _NO_ERROR:
                    logger.info(
                        "topic created", topic=topic["name"], partitions=partitions, log=self.url
                    )
                elif code != _TOPIC_ALREADY_EXISTS:  # someone else was quicker: fine
                    reason = topic.get("error_message") or kafka_errors.for_code(code).__name__
                    raise LogError(f"cannot create topic {topic['name']!r} on {self.url}: {reason}")
        self._admin.run(
            "waiting for topics to appear in metadata",
            lambda admin: admin.wait_for_topics(wanted, timeout_ms=self.timeout_ms),
        )
        for name, info in self._describe(wanted).items():
            if info.get("error_code") == _NO_ERROR and info.get("partitions"):
                self._partition_counts[name] = len(info["partitions"])
                if len(info["partitions"]) != partitions and name not in missing:
                    logger.warning(
                        "topic exists with another partition count; kept as it is",
                        topic=name,
                        partitions=len(info["partitions"]),
                        requested=partitions,
                    )

    def delete_records(self, topic: str, before: Mapping[int, int]) -> None:
        """Move the partitions' start past ``before`` (DeleteRecords): the records below are
        unreadable at once, and gone from disk when the broker deletes their segment."""
        from kafka.structs import TopicPartition as KafkaTopicPartition

        wanted = {KafkaTopicPartition(topic, p): o for p, o in before.items() if o > 0}
        if wanted:
            self._admin.run(
                "deleting records",
                lambda admin: admin.delete_records(wanted, timeout_ms=self.timeout_ms),
            )

    def _partition_count(self, topic: str) -> int:
        # Partitions of our topics never change (a key must keep its partition), so the
        # count is safe to remember; a produce naming a partition past it looks again (a
        # topic someone grew by hand).
        count = self._partition_counts.get(topic)
        if count is not None:
            return count
        info = self._describe([topic]).get(topic)
        code = _UNKNOWN_TOPIC_OR_PARTITION if info is None else info.get("error_code")
        if code == _UNKNOWN_TOPIC_OR_PARTITION:
            raise LogError(
                f"topic {topic!r} does not exist on {self.url}: create it first "
                "(ensure_topics, or emit once through the Emitter); this broker does not "
                "create topics on first use"
            )
        if code != _NO_ERROR or info is None or not info.get("partitions"):
            reason = kafka_errors.for_code(int(code or 0)).__name__ if code else "no partitions"
            raise LogError(f"topic {topic!r} on {self.url} is not usable: {reason}")
        count = len(info["partitions"])
        self._partition_counts[topic] = count
        return count

    def partitions(self, topic: str) -> list[int]:
        return list(range(self._partition_count(topic)))

    def partition_for(self, topic: str, key: bytes) -> int:
        return partition_for_key(key, self._partition_count(topic))

    # -- producing ---------------------------------------------------------------------

    def produce(self, topic: str, messages: Sequence[OutgoingMessage]) -> list[Position]:
        """Send the batch, wait until the broker acknowledged all of it (acks=all), return
        the positions in input order. On error, some messages may have been written: the
        idempotent producer keeps retries from duplicating them, and consumers de-duplicate
        by event_id."""
        if not messages:
            return []
        count = self._partition_count(topic)  # unknown topic -> LogError now, not later
        wanted = max((m.partition for m in messages if m.partition is not None), default=-1)
        if wanted >= count:  # the topic may have grown since its count was remembered
            self._partition_counts.pop(topic, None)
            count = self._partition_count(topic)
        check_partitions(topic, messages, count)

        def send_all(producer: Any) -> list[Any]:
            send = producer.send
            if wanted >= 0 and wanted not in (producer.partitions_for(topic) or ()):
                # The broker has it (described above), the producer's metadata not yet (it
                # refreshes on its own only every few minutes): ask for it once now.
                _refresh_metadata(producer, self.timeout_ms / 1000)
            if wanted >= 0 and wanted not in (producer.partitions_for(topic) or ()):
                raise LogUnavailable(
                    f"partition {wanted} of topic {topic!r} is not in the producer's metadata "
                    f"of {self.url} yet (the topic grew?): retry in a moment"
                )
            futures = [
                send(
                    topic,
                    key=msg.key,
                    value=msg.value,
                    headers=list(msg.headers),
                    timestamp_ms=msg.timestamp_ms,
                    partition=msg.partition,
                )
                for msg in messages
            ]
            producer.flush(timeout=self.timeout_ms / 1000)
            return [_acked(future, self.timeout_ms / 1000) for future in futures]

        # The producer is thread-safe: its lock is held only to make or drop it.
        acked = self._producer.run(
            f"producing {len(messages)} message(s) to topic {topic!r}", send_all, locked=False
        )
        name = str(topic)
        positions = [Position(name, md.partition, md.offset) for md in acked]
        logger.debug(
            "produced",
            topic=topic,
            count=len(positions),
            first=positions[0].token(),
            last=positions[-1].token(),
        )
        return positions

    # -- offsets -----------------------------------------------------------------------

    def high_watermarks(self, topic: str) -> dict[int, int]:
        """Per partition, the offset the next message will get (0 for empty partitions)."""
        tps = [KafkaTopicPartition(topic, p) for p in self.partitions(topic)]
        # A KafkaConsumer is not for concurrent callers: the reader's own lock, waited for
        # no longer than one look-up may take.
        ends = self._offsets_reader.run(
            f"reading the high-water marks of topic {topic!r}",
            lambda reader: reader.end_offsets(tps, timeout_ms=self.offsets_timeout_ms),
            wait_s=self.offsets_timeout_ms / 1000,
        )
        return {int(tp.partition): int(offset) for tp, offset in ends.items()}

    # -- consuming ---------------------------------------------------------------------

    def consumer(
        self,
        group_id: str | None,
        topics: Sequence[str],
        *,
        on_assign: OnAssign | None = None,
        partitions: Collection[int] | None = None,
    ) -> KafkaConsumerAdapter:
        """A member of ``group_id`` subscribed to ``topics``; it joins the group on its first
        ``poll``. Topics that do not exist yet are picked up once they do. With
        ``group_id=None``: every partition of the (existing) topics assigned by hand (only
        ``partitions``, when given), outside any group, so reading never makes the broker
        rebalance anyone."""
        if group_id is not None and not group_id:
            raise LogError("a consumer needs a non-empty group_id (or None: no group)")
        if not topics:
            raise LogError("a consumer needs at least one topic to subscribe to")
        if partitions is not None and group_id is not None:
            raise LogError(
                "a group member takes the partitions its group gives it: "
                "pass partitions only with group_id=None"
            )
        consumer = KafkaConsumerAdapter(
            self, group_id, sorted(set(topics)), on_assign, partitions=partitions
        )
        self._consumers.add(consumer)
        return consumer

    def close(self) -> None:
        """Close the consumers still open (they leave their groups), flush and close the
        producer, close the admin and offset clients. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for consumer in list(self._consumers):
            consumer.close()
        for client in (self._producer, self._offsets_reader, self._admin):
            client.close(timeout_s=self.timeout_ms / 1000)


class _Broken(LogUnavailable):
    """A kafka-python client is in a state it does not leave (closed, fatal error): the
    call may be retried, on a new client."""


class _Client:
    """One kafka-python client of a :class:`KafkaLog`, made on first use, dropped when a call
    on it failed because the broker did not answer, and made anew on a later call (not
    sooner than a backoff since the previous attempt). Its lock is its own."""

    def __init__(
        self,
        log: KafkaLog,
        name: str,
        factory: Callable[[], Any],
        *,
        drop_when_unavailable: bool = True,
    ) -> None:
        self._log = log
        self.name = name
        self._factory = factory
        # Offset readers stayed stuck after the broker came back (every look-up timed out
        # once more): those are made anew. A client in an illegal state always is.
        self._drop_when_unavailable = drop_when_unavailable
        self._lock = threading.Lock()  # making the client, and calls on unsafe clients
        self._state_lock = threading.Lock()  # the bookkeeping below
        self.current: Any = None
        self._failures = 0
        self._next_attempt = 0.0
        self._down_since: float | None = None
        self._last_warning = float("-inf")
        self._quiet_failures = 0
        self._ever_worked = False

    def _get(self) -> Any:
        """The client, made if needed. Call with the lock held."""
        client = self.current
        if client is None:
            wait = self._next_attempt - time.monotonic()
            if wait > 0:
                raise LogUnavailable(
                    f"Kafka at {', '.join(self._log.bootstrap_servers)} did not answer the "
                    f"{self.name} lately; next attempt in {wait:.1f}s"
                )
            try:
                client = self._log._create(self.name, self._factory)
            except LogUnavailable as exc:
                with self._state_lock:
                    self._failed(exc)
                raise
            with self._state_lock:
                self.current = client
        return client

    def run(
        self,
        what: str,
        fn: Callable[[Any], _T],
        *,
        locked: bool = True,
        wait_s: float | None = None,
    ) -> _T:
        """``fn(client)``, errors mapped as :meth:`KafkaLog._call` does. With ``locked`` the
        call itself holds this client's lock (clients that are not thread-safe); otherwise
        only getting the client does. ``wait_s`` bounds the wait for the lock."""
        timeout = self._log.timeout_ms / 1000 if wait_s is None else wait_s
        if not self._lock.acquire(timeout=timeout):
            raise LogUnavailable(
                f"{what} on {self._log.url}: the Kafka {self.name} is busy with a call that "
                f"has not returned for {timeout:g}s; is the broker gone?"
            )
        try:
            client = self._get()
            if locked:
                return self._attempt(what, fn, client)
        finally:
            self._lock.release()
        return self._attempt(what, fn, client)

    def _attempt(self, what: str, fn: Callable[[Any], _T], client: Any) -> _T:
        try:
            result = self._log._call(what, lambda: fn(client))
        except LogUnavailable as exc:
            with self._state_lock:
                if self._drop_when_unavailable:
                    self._drop(client)
                self._failed(exc)
            raise
        except _Broken as exc:
            with self._state_lock:
                self._drop(client)
                self._failed(exc)
            raise
        with self._state_lock:
            self._succeeded()
        return result

    def _drop(self, client: Any) -> None:
        """Forget a client that failed; closed on a thread of its own, since closing one
        whose broker is gone may block."""
        if self.current is client:
            self.current = None
            threading.Thread(
                target=_close_quietly, args=(client, 0.0), name="kafka-close", daemon=True
            ).start()

    def _failed(self, exc: LogError) -> None:
        now = time.monotonic()
        self._failures += 1
        low, high = _RECREATE_BACKOFF_S
        self._next_attempt = now + min(high, low * 2 ** (self._failures - 1))
        if self._down_since is None:
            self._down_since = now
        if not self._ever_worked and self._failures == 1:
            # Never reached yet: the caller's own error says it all (a one-shot command
            # prints exactly that); a client that keeps failing still warns below.
            self._last_warning = now
            self._quiet_failures += 1
        elif now - self._last_warning >= _WARN_EVERY_S:
            logger.warning(
                "kafka unavailable; reconnecting with backoff",
                client=self.name,
                log=self._log.url,
                error=str(exc),
                failures=self._failures,
                not_logged_since_last=self._quiet_failures,
            )
            self._last_warning = now
            self._quiet_failures = 0
        else:
            self._quiet_failures += 1

    def _succeeded(self) -> None:
        self._ever_worked = True
        if self._down_since is not None:
            logger.info(
                "kafka reachable again",
                client=self.name,
                log=self._log.url,
                down_s=round(time.monotonic() - self._down_since, 1),
                failures=self._failures,
            )
        self._failures = 0
        self._next_attempt = 0.0
        self._down_since = None  # _last_warning stays: a flapping broker still warns once a minute

    def close(self, timeout_s: float) -> None:
        with self._state_lock:
            client, self.current = self.current, None
        if client is not None:
            _close_quietly(client, timeout_s)


def _close_quietly(client: Any, timeout_s: float) -> None:
    try:
        if isinstance(client, KafkaProducer):
            try:
                client.close(timeout=timeout_s)
            except kafka_errors.KafkaTimeoutError:
                # kafka-python 3.0.12 raises from close() when messages are still pending
                # and leaves the producer open (its __del__ then prints a traceback):
                # finish the close it gave up on.
                sender = getattr(client, "_sender", None)
                if sender is not None:
                    sender.force_close()
                client._closed = True
        else:
            client.close()
    except Exception as exc:  # closing must not hide the caller's own error
        logger.warning("closing a Kafka client failed", error=str(exc))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka is untyped
    """Runs on kafka-python's IO thread: only records what changed and pauses new
    partitions; :meth:`KafkaConsumerAdapter.poll` does the rest on the caller's thread."""

    def __init__(self, owner: KafkaConsumerAdapter) -> None:
        self._owner: Callable[[], KafkaConsumerAdapter | None] = weakref.ref(owner)

    def detach(self) -> None:
        """The consumer this listens to is being replaced: what it says no longer counts."""
        self._owner = lambda: None

    def on_partitions_revoked(self, revoked: Any) -> None:
        owner = self._owner()
        if owner is not None:
            owner._revoked({_from_kafka(tp) for tp in revoked})

    def on_partitions_assigned(self, assigned: Any) -> None:
        owner = self._owner()
        if owner is not None:
            owner._assigned({_from_kafka(tp) for tp in assigned}, assigned)


_set = object.__setattr__


def _message(topic: str, partition: int, record: Any) -> Message:
    """``Message(...)`` of a kafka-python record without the frozen dataclass's ``__init__``
    (an ``object.__setattr__`` per field: ~1 us of every message a poll returns): the same
    fields, the same object."""
    message = Message.__new__(Message)
    _set(
        message,
        "__dict__",
        {
            "topic": topic,
            "partition": partition,
            "offset": int(record.offset),
            "key": record.key,
            "value": record.value,
            "timestamp_ms": int(record.timestamp),
            "headers": _headers(record.headers) if record.headers else (),
        },
    )
    return message


def _headers(headers: Any) -> Headers:
    return tuple((str(k), bytes(v)) for k, v in headers)


class KafkaConsumerAdapter:
    """A consumer-group member on Kafka: the :class:`~consumers.log.LogConsumer` port."""

    def __init__(
        self,
        log: KafkaLog,
        group_id: str | None,
        topics: list[str],
        on_assign: OnAssign | None,
        *,
        partitions: Collection[int] | None = None,
    ) -> None:
        self._log = log
        self.group_id = group_id
        self.topics = topics
        self._on_assign = on_assign
        self._closed = False
        self._state_lock = threading.Lock()
        # Assigned partitions whose start offset on_assign has not given yet (paused).
        self._pending: set[TopicPartition] = set()
        # What this member holds, by the rebalance callbacks: kafka-python's assignment()
        # still lists revoked partitions until the next assignment arrives, and in between
        # another member may already hold them (a keeper must not decide for them).
        self._held: set[TopicPartition] = set()
        self.member_id = f"{log.client_id}-{uuid.uuid4().hex[:12]}"
        self._log_ctx = logger.bind(group_id=group_id, member_id=self.member_id)
        # Since when the member has not been a stable member of its group (None: it is).
        self._unstable_since: float | None = None
        self._listener: _Listener | None = None
        self._consumer: Any = self._new_consumer()
        if group_id is None:
            # A plain reader: every partition by hand, no group, no rebalance.
            kafka_tps = [
                KafkaTopicPartition(topic, p)
                for topic in topics
                for p in log.partitions(topic)
                if partitions is None or p in partitions
            ]
            self._consumer.assign(kafka_tps)
            self._assigned({_from_kafka(tp) for tp in kafka_tps}, kafka_tps)
            return
        self._listener = self._subscribe(self._consumer)

    def _new_consumer(self) -> Any:
        log = self._log
        return log._create(
            "consumer",
            lambda: KafkaConsumer(
                client_id=self.member_id,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                allow_auto_create_topics=False,
                fetch_max_wait_ms=log.fetch_max_wait_ms,
                max_partition_fetch_bytes=log.partition_fetch_bytes,
                fetch_max_bytes=log.partition_fetch_bytes * _FETCH_PARTITIONS,
                session_timeout_ms=log.session_timeout_ms,
                heartbeat_interval_ms=max(100, log.session_timeout_ms // 10),
                **log._client_config(),
            ),
        )

    def _subscribe(self, consumer: Any) -> _Listener:
        listener = _Listener(self)
        consumer.subscribe(topics=self.topics, listener=listener)
        # Know the topics' partitions before the first join. Otherwise the group leader may
        # assign before its metadata arrives (nothing to anyone), rejoin at once, and when a
        # short poll returns while that second join is in flight, kafka-python 3.0.12 never
        # completes it: the member stays without partitions and stops heartbeating (seen
        # about once in 50 fresh groups on a new topic). The same happens to a member whose
        # group has members subscribed to other topics (one group name for two engines'
        # topics): :meth:`_replace_if_stuck` replaces it.
        for topic in self.topics:
            self._log._call(
                f"reading the partitions of topic {topic!r}",
                functools.partial(consumer.partitions_for_topic, topic),
            )
        return listener

    def _replace_if_stuck(self) -> None:
        """A group member that has not been stable for three session timeouts while it kept
        polling is stuck in kafka-python's join (above): its partitions went to the others
        long ago. It is replaced by a new member of the group, which joins afresh (a member
        that only waited for a slow peer costs the group one more rebalance)."""
        if self.group_id is None:
            return
        now = time.monotonic()
        if self._consumer.group_metadata().state == MemberState.STABLE:
            self._unstable_since = None
            return
        if self._unstable_since is None:
            self._unstable_since = now
            return
        stuck_s = now - self._unstable_since
        if stuck_s < 3 * self._log.session_timeout_ms / 1000:
            return
        self._log_ctx.warning(
            "group member stuck outside its group: joining again as a new member",
            unstable_s=round(stuck_s, 1),
        )
        # The new member first: when the broker is away it fails here (the caller retries),
        # and this member stays as it was, to be replaced at a later poll.
        fresh = self._new_consumer()
        try:
            listener = self._subscribe(fresh)
        except BaseException:
            _close_quietly(fresh, self._log.timeout_ms / 1000)
            raise
        if self._listener is not None:
            self._listener.detach()
        with self._state_lock:
            released, self._held, self._pending = self._held, set(), set()
        if released:
            self._log_ctx.info("partitions revoked", revoked=[str(tp) for tp in sorted(released)])
        _close_quietly(self._consumer, self._log.timeout_ms / 1000)
        self._consumer, self._listener, self._unstable_since = fresh, listener, None

    def __repr__(self) -> str:
        return f"KafkaConsumerAdapter(group_id={self.group_id!r}, topics={self.topics!r})"

    # -- rebalance callbacks (kafka-python's IO thread) ----------------------------------

    def _revoked(self, revoked: set[TopicPartition]) -> None:
        with self._state_lock:
            self._pending -= revoked
            self._held -= revoked
        if revoked:
            self._log_ctx.info("partitions revoked", revoked=[str(tp) for tp in sorted(revoked)])

    def _assigned(self, assigned: set[TopicPartition], kafka_tps: Any) -> None:
        with self._state_lock:
            self._held |= assigned
        if self._on_assign is not None and assigned:
            # Nothing of these partitions may be returned before on_assign chose the start.
            self._consumer.pause(*kafka_tps)
            with self._state_lock:
                self._pending |= assigned
        if assigned:
            self._log_ctx.info("partitions assigned", assigned=[str(tp) for tp in sorted(assigned)])

    # -- reading -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"consumer {self.member_id} of group {self.group_id!r} is closed")

    def _start_pending(self) -> None:
        """Ask on_assign where newly assigned partitions start, seek there, resume them.
        If on_assign raises, they stay paused and the next poll asks again."""
        with self._state_lock:
            pending = frozenset(self._pending)
        if not pending or self._on_assign is None:
            return
        chosen = self._on_assign(pending)
        with self._state_lock:
            still = pending & self._pending  # a rebalance may have taken some meanwhile
            self._pending -= still
        current = {_from_kafka(tp) for tp in self._consumer.assignment()}
        for tp in sorted(still & current):
            offset = chosen.get(tp)
            if offset is not None:
                if offset < 0:
                    raise LogError(f"on_assign gave negative offset {offset} for {tp}")
                self._consumer.seek(_to_kafka(tp), offset)
                self._log_ctx.info(
                    "partition starts where on_assign said",
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=offset,
                )
            self._consumer.resume(_to_kafka(tp))

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        """Next messages, in offset order per partition (sorted by topic, partition,
        offset); [] when none arrived within ``timeout_s``. The first poll joins the group,
        which on a local broker takes a few hundred milliseconds.

        While the log held more than the first records a poll got (a partition's position
        short of the high-water mark its fetch reported: a replay, a consumer catching up),
        it polls again until ``max_records`` are gathered or that backlog is read, for at
        most half a second (``timeout_s`` when longer): kafka-python returns what its last
        fetches brought, a small fetch per partition (JOURNEY_KAFKA_FETCH_KIB) made short
        polls, and a runner's transactions as short. A consumer at the head gets what one
        fetch brought, as soon as it came: it never waits for what is not in the log yet."""
        self._check_open()
        if max_records < 1:
            raise LogError(f"max_records must be at least 1, got {max_records}")
        started = time.monotonic()
        deadline = started + max(0.0, timeout_s)
        # Filling waits for fetches the log has data for: at least this long (a runner
        # polls with 50 ms, and under load a fetch's round trip can take longer).
        filled_by = max(deadline, started + _FILL_WAIT_S)
        batch: dict[Any, list[Any]] = {}
        backlog: dict[Any, int] = {}
        count = 0
        while True:
            if not count:  # a batch being filled is never mixed with a new assignment's start
                self._replace_if_stuck()
                self._start_pending()
            remaining_ms = max(
                0, int(((filled_by if count else deadline) - time.monotonic()) * 1000)
            )
            if self._on_assign is not None:
                # Short slices, so partitions assigned meanwhile get on_assign soon.
                remaining_ms = min(remaining_ms, _ASSIGN_CHECK_MS)
            more = self._log._call(
                f"polling {', '.join(self.topics)} for group {self.group_id!r}",
                functools.partial(
                    self._consumer.poll, timeout_ms=remaining_ms, max_records=max_records - count
                ),
            )
            first = not count
            for ktp, records in more.items():
                if records:
                    batch.setdefault(ktp, []).extend(records)
                    count += len(records)
            if count and first:
                backlog = self._backlog(batch)
            if count and (count >= max_records or not self._behind(batch, backlog) or not more):
                break
            if time.monotonic() >= (filled_by if count else deadline):
                break
        # Sorted by topic and partition; each partition's records come in offset order.
        return [
            _message(topic, partition, record)
            for topic, partition, records in sorted(
                (str(ktp.topic), int(ktp.partition), records) for ktp, records in batch.items()
            )
            for record in records
        ]

    def _backlog(self, batch: Mapping[Any, list[Any]]) -> dict[Any, int]:
        """The high-water mark of each partition of ``batch`` that this consumer has not
        read up to: what the broker held, when the fetch that brought the batch's records
        answered (kafka-python keeps the latest fetch's). By the position, not the last
        record: a transaction's commit marker after it is read (skipped) too."""
        consumer = self._consumer
        out: dict[Any, int] = {}
        for ktp, records in batch.items():
            try:
                highwater = consumer.highwater(ktp)
            except kafka_errors.IllegalStateError:  # revoked meanwhile: not this member's
                continue
            if highwater is not None and self._read_up_to(ktp, records) < highwater:
                out[ktp] = highwater
        return out

    def _behind(self, batch: Mapping[Any, list[Any]], backlog: Mapping[Any, int]) -> bool:
        """Whether a partition is still short of the backlog it had at the poll's first
        records (what arrived since is the next poll's: filling never chases the head)."""
        return any(
            ktp in batch and self._read_up_to(ktp, batch[ktp]) < highwater
            for ktp, highwater in backlog.items()
        )

    def _read_up_to(self, ktp: Any, records: list[Any]) -> int:
        """The consumer's position in the partition (public ``position``; with no wait it
        only reads what a poll already set), or past the last record when it has none."""
        try:
            position = self._consumer.position(ktp, timeout_ms=0)
        except kafka_errors.IllegalStateError:  # revoked meanwhile
            position = None
        return position if isinstance(position, int) else int(records[-1].offset) + 1

    # -- offsets -----------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit the given next-offsets-to-read for the group, or the current position of
        every assigned partition. Fails with LogError when the group rebalanced meanwhile
        (the new owner re-reads from the last successful commit)."""
        self._check_open()
        if self.group_id is None:  # no group: nothing to commit to
            return
        if offsets is None:
            self._log._call(
                f"committing for group {self.group_id!r}", self._consumer.commit, commit=True
            )
            return
        to_commit: dict[Any, Any] = {}
        for tp, offset in offsets.items():
            if offset < 0:
                raise LogError(f"cannot commit negative offset {offset} for {tp}")
            to_commit[_to_kafka(tp)] = OffsetAndMetadata(offset, "", -1)
        if not to_commit:
            return
        self._log._call(
            f"committing {len(to_commit)} offset(s) for group {self.group_id!r}",
            lambda: self._consumer.commit(offsets=to_commit, timeout_ms=self._log.timeout_ms),
            commit=True,
        )

    def committed(self, tp: TopicPartition) -> int | None:
        self._check_open()
        if self.group_id is None:
            return None
        offset = self._log._call(
            f"reading the committed offset of {tp} for group {self.group_id!r}",
            lambda: self._consumer.committed(_to_kafka(tp), timeout_ms=self._log.timeout_ms),
        )
        return None if offset is None or offset < 0 else int(offset)

    def assignment(self) -> frozenset[TopicPartition]:
        if self._closed:
            return frozenset()
        with self._state_lock:
            held = frozenset(self._held)
        return frozenset(_from_kafka(tp) for tp in self._consumer.assignment()) & held

    def position(self, tp: TopicPartition) -> int | None:
        """The next offset ``poll`` will return for ``tp`` (None when not assigned)."""
        self._check_open()
        if tp not in self.assignment():
            return None
        return int(
            self._log._call(
                f"reading the position of {tp}",
                lambda: self._consumer.position(_to_kafka(tp), timeout_ms=self._log.timeout_ms),
            )
        )

    # -- seeking -----------------------------------------------------------------------

    def _assigned_or_fail(self, tp: TopicPartition) -> None:
        owned = self.assignment()
        if tp not in owned:
            raise LogError(
                f"cannot seek {tp}: not assigned to this consumer "
                f"(assigned: {', '.join(str(t) for t in sorted(owned)) or 'none yet'})"
            )

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        with self._state_lock:
            was_pending = tp in self._pending
            self._pending.discard(tp)
        self._consumer.seek(_to_kafka(tp), offset)
        if was_pending:  # an explicit seek answers the question on_assign was to answer
            self._consumer.resume(_to_kafka(tp))
        self._log_ctx.info("seek", topic=tp.topic, partition=tp.partition, offset=offset)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._check_open()
        if offset < 0:
            raise LogError(f"cannot seek {tp} to negative offset {offset}")
        self._assigned_or_fail(tp)
        self._seek(tp, offset)

    def seek_to_beginning(self) -> None:
        """Every assigned partition reads again from its earliest retained offset (0: our
        topics keep everything)."""
        self._check_open()
        owned = sorted(self.assignment())
        if not owned:
            return
        starts = self._log._call(
            "reading the earliest offsets",
            lambda: self._consumer.beginning_offsets(
                [_to_kafka(tp) for tp in owned], timeout_ms=self._log.timeout_ms
            ),
        )
        for tp in owned:
            self._seek(tp, int(starts[_to_kafka(tp)]))

    def seek_to_timestamp(self, timestamp_ms: int) -> None:
        """Every assigned partition reads from its first message whose timestamp is at or
        after ``timestamp_ms``, or from its high-water mark when there is none."""
        self._check_open()
        owned = sorted(self.assignment())
        if not owned:
            return
        if timestamp_ms < 0:
            raise LogError(f"cannot seek to negative timestamp {timestamp_ms}")
        kafka_tps = [_to_kafka(tp) for tp in owned]
        found = self._log._call(
            "looking up offsets by time",
            lambda: self._consumer.offsets_for_times(
                dict.fromkeys(kafka_tps, timestamp_ms), timeout_ms=self._log.timeout_ms
            ),
        )
        missing = [ktp for ktp in kafka_tps if found.get(ktp) is None]
        ends: dict[Any, int] = {}
        if missing:
            ends = self._log._call(
                "reading the high-water marks",
                lambda: self._consumer.end_offsets(missing, timeout_ms=self._log.timeout_ms),
            )
        for tp, ktp in zip(owned, kafka_tps, strict=True):
            hit = found.get(ktp)
            self._seek(tp, int(hit.offset) if hit is not None else int(ends[ktp]))

    def close(self) -> None:
        """Leave the group at once (the other members take over without waiting for the
        session timeout). Does not commit."""
        if self._closed:
            return
        self._closed = True
        owned = sorted(_from_kafka(tp) for tp in self._consumer.assignment())
        try:
            self._consumer.close(autocommit=False, timeout_ms=self._log.timeout_ms)
        except Exception as exc:  # closing must not hide the caller's own error
            self._log_ctx.warning("closing the Kafka consumer failed", error=str(exc))
        self._log_ctx.info("group member left", released=[str(tp) for tp in owned])


if TYPE_CHECKING:
    # mypy proves here that the adapter fits the port; nothing runs.
    def _fits_the_port(log: KafkaLog, consumer: KafkaConsumerAdapter) -> tuple[Log, LogConsumer]:
        return log, consumer
