"""kafka-python internals that consumers/kafka_log.py still relies on, checked loudly.

KafkaProducer has no public call to refresh its metadata now: ``_refresh_metadata`` (the
keeper's produce to a partition of a topic that grew) asks ``producer._metadata`` for an
update and wakes ``producer._sender``, as kafka-python's own wait for a topic's metadata does.
pyproject pins kafka-python to 3.0.x for it; a release that renames either attribute fails
here, at the unit tests, not as a keeper that cannot produce under load. No broker is needed:
the attributes are read from an unconnected producer's parts."""

from __future__ import annotations

import inspect

from kafka.cluster import ClusterMetadata
from kafka.future import Future
from kafka.producer import KafkaProducer
from kafka.producer.sender import Sender

from consumers import kafka_log


def test_the_producer_metadata_refresh_uses_what_kafka_python_still_has() -> None:
    source = inspect.getsource(KafkaProducer)
    assert "self._metadata = " in source, "KafkaProducer no longer keeps _metadata"
    assert "self._sender = " in source, "KafkaProducer no longer keeps _sender"
    cluster = ClusterMetadata()
    future = cluster.request_update()
    assert isinstance(future, Future)  # add_both is what _refresh_metadata waits with
    assert callable(getattr(future, "add_both", None))
    assert callable(getattr(Sender, "wakeup", None)), "Sender.wakeup went away"
    assert "_metadata.request_update" in inspect.getsource(kafka_log._refresh_metadata)


def test_the_poll_fill_reads_only_public_consumer_state() -> None:
    source = inspect.getsource(kafka_log.KafkaConsumerAdapter)
    assert "_subscription" not in source
