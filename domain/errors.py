"""One exception base for everything a user can cause, with specific subclasses."""

from __future__ import annotations

__all__ = ["InvalidEvent", "JourneyError", "UnknownEventType"]


class JourneyError(Exception):
    """Base of every error this project raises on purpose. The message says what was
    wrong and, where it helps, what to do."""


class InvalidEvent(JourneyError):
    """An event could not be decoded, failed its schema or broke a bound.

    ``reason`` is a short machine-readable kind (``not_json``, ``invalid_envelope``,
    ``unknown_type``, ``unknown_version``, ``invalid_data``, and for the bounds of
    :mod:`domain.bounds`: ``too_large``, ``too_deep``, ``out_of_range``); ``field`` names the
    offending field as a dotted path when there is one. Each reason is the dead-letter
    reason of a message on the log (docs/events.md).
    """

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.message = message


class UnknownEventType(InvalidEvent):
    def __init__(self, type_name: str, known: list[str]) -> None:
        hint = ", ".join(known[:6]) + (", ..." if len(known) > 6 else "")
        super().__init__(
            "unknown_type",
            f"unknown touchpoint type {type_name!r} (known: {hint}; see docs/events.md)",
            field="type",
        )
