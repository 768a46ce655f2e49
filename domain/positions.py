"""Where a fact sits on the log, as a plain value: the log port (consumers/) and the
projection store (projections/) both speak of partitions, and neither may import the other's
types, so the value lives below them both."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TopicPartition"]


@dataclass(frozen=True, order=True)
class TopicPartition:
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"
