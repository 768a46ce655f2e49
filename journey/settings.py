"""One typed settings object, read from options and JOURNEY_* environment variables."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from domain.bounds import DEFAULT_MAX_FUTURE

__all__ = ["DEFAULT_BROKER", "Settings", "redact_url"]

DEFAULT_BROKER = "embedded://journey.db"


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Settings(BaseModel):
    """Everything configurable. Environment: JOURNEY_<NAME> (e.g. JOURNEY_BROKER)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    broker: str = Field(
        default=DEFAULT_BROKER,
        description="kafka://host:port[,host:port] or embedded:///path/to/file.db",
    )
    topic: str = Field(default="journey.touchpoints", description="The log of record")
    partitions: int = Field(default=6, ge=1, description="Partitions when creating topics")
    store: str = Field(default="sqlite:///journey-views.db", description="Projection store URL")
    allowed_lateness: float = Field(
        default=300,
        ge=0,
        description="Seconds a touchpoint may arrive after later ones and still count before "
        "the promise keeper decides a deadline (event time)",
    )
    idle_timeout: float = Field(
        default=30,
        gt=0,
        description="Seconds without new event time after which a partition read to its head "
        "follows the others' clocks, and the wall clock once all are idle",
    )
    log_format: str = Field(default="console", pattern="^(console|json)$")
    log_level: str = Field(default="info")
    max_future: timedelta = Field(
        default=DEFAULT_MAX_FUTURE,
        ge=timedelta(0),
        le=timedelta(days=365),
        description="How far after now a touchpoint's occurred_at may lie (clock skew), "
        "as an ISO 8601 duration (P1D, PT6H); the same at emit, POST /events and the consumer",
    )
    kafka_password: SecretStr | None = Field(
        default=None, description="SASL password, never logged"
    )

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {}
        for name in cls.model_fields:
            env = os.environ.get(f"JOURNEY_{name.upper()}")
            if env is not None and env != "":
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def safe_dict(self) -> dict[str, object]:
        """For logs: secrets masked, passwords in URLs redacted."""
        data = self.model_dump()
        data["broker"] = redact_url(self.broker)
        data["store"] = redact_url(self.store)
        data["kafka_password"] = "***" if self.kafka_password else None
        return data

    def store_path(self) -> Path:
        return Path(self.store.removeprefix("sqlite:///"))
