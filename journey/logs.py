"""Logging is configured here, once, by the entry point. Library code only calls
``structlog.get_logger()`` and binds ids (event_id, customer_id, topic, partition, offset)."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

from journey.settings import redact

__all__ = ["configure_logging"]


def _redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """Passwords in URLs and registered secrets never reach a log line, whatever field
    (or client library's message) carries them."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
        elif isinstance(value, list | tuple) and any(isinstance(v, str) for v in value):
            event[key] = [redact(v) if isinstance(v, str) else v for v in value]
    return event


def configure_logging(fmt: Literal["console", "json"] = "console", level: str = "info") -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library (kafka-python, uvicorn): the same format,
    # the same redaction. kafka-python reports every failed reconnect attempt; the Kafka
    # adapter says the same once a minute, so below debug its own lines stay out.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_journey", False):
            root.removeHandler(old)
    handler._journey = True  # type: ignore[attr-defined]  # ours, replaced on reconfigure
    root.addHandler(handler)
    # Foreign libraries' info lines stay out below debug, as before (uvicorn's banner).
    root.setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    logging.getLogger("kafka").setLevel(logging.DEBUG if numeric <= logging.DEBUG else 100)
