"""Fixtures of the integration tests: ``broker``, a Kafka broker of the module's own."""

from tests.integration.own_broker import broker

__all__ = ["broker"]
