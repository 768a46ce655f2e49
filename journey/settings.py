"""One typed settings object, read from options and JOURNEY_* environment variables.

Options given on the command line win over the environment, which wins over the defaults.
Everything is checked here, before any command touches the log or the store: URLs by
scheme and shape, numbers strictly (no "1.5", no "true" where a count is expected).
Secrets live only in :class:`~pydantic.SecretStr` fields: a password written into the
broker URL is moved into ``kafka_password`` on validation, so ``broker`` is always safe to
print.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumers import open_log, parse_log_url
from consumers.log import Log, LogError
from domain.bounds import DEFAULT_MAX_FUTURE
from domain.errors import JourneyError
from projections.location import StoreAddress, is_postgres

__all__ = [
    "DEFAULT_BROKER",
    "ConfigError",
    "Settings",
    "describe_validation_error",
    "log_level_alone",
    "redact",
    "redact_url",
    "strict_int",
]

DEFAULT_BROKER = "embedded://journey.db"


class ConfigError(JourneyError):
    """A setting (option or JOURNEY_* variable) is wrong; the message says which and how."""


# -- redaction ---------------------------------------------------------------------------

# user:password@ inside anything that looks like a URL (scheme://user:password@host).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?P<secret>[^\s@/]+)@")

# Secrets met at run time (passwords from URLs and from SecretStr fields): redact() also
# removes them where they appear outside a URL (e.g. inside a client library's message).
_KNOWN_SECRETS: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a secret so :func:`redact` blanks it wherever it appears."""
    if secret and len(secret) >= 3:  # a 1-2 character "secret" would blank half the text
        _KNOWN_SECRETS.add(secret)


# An API key or console session (journey/security/keys.py: prefix + 43 URL-safe characters).
_BEARER = re.compile(r"\bj[ks]_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")


def redact(text: str) -> str:
    """``text`` with passwords in URLs, API keys and sessions, and every registered secret
    replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***@", text)
    text = _BEARER.sub("***", text)
    for secret in sorted(_KNOWN_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to log."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return redact(url)
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


# -- strict numbers ----------------------------------------------------------------------


def strict_int(value: object) -> object:
    """An int, or a string of decimal digits (environment variables are text); never a
    bool, a float or "1.5" — those are mistakes, not numbers of things."""
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise ValueError(f"expected a whole number, got {value!r}")


StrictCount = Annotated[int, BeforeValidator(strict_int)]


# Settings that are also global options of the `journey` command.
_CLI_OPTIONS = frozenset({"broker", "topic", "store", "log_format", "log_level"})


def describe_validation_error(exc: ValidationError) -> str:
    """pydantic's errors as one line: ``--name / JOURNEY_NAME: what is wrong``."""
    parts = []
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        where = name
        if error["loc"]:
            option = f"--{name.replace('_', '-')} / " if name in _CLI_OPTIONS else ""
            where = f"{option}JOURNEY_{name.upper()}"
        parts.append(f"{where}: {message}")
    return redact("; ".join(parts))


# -- the settings ------------------------------------------------------------------------

LogLevel = Literal["debug", "info", "warning", "error"]


class _LogLevelOnly(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JOURNEY_", extra="ignore", env_ignore_empty=True, frozen=True
    )
    log_level: LogLevel | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


def log_level_alone() -> str | None:
    """JOURNEY_LOG_LEVEL read and checked as :class:`Settings` reads it, without the other
    settings: for the one question asked when those did not validate (is a traceback
    wanted?). None when it is unset or not a level."""
    try:
        return _LogLevelOnly().log_level
    except ValidationError:
        return None


class Settings(BaseSettings):
    """Everything configurable. Environment: JOURNEY_<NAME> (e.g. JOURNEY_BROKER).

    Helpers adding a setting: one field each, with a description, in the block below.
    """

    model_config = SettingsConfigDict(
        env_prefix="JOURNEY_",
        frozen=True,
        extra="forbid",
        validate_default=True,
        env_ignore_empty=True,  # JOURNEY_X= (empty) means "not set", as before
        hide_input_in_errors=True,  # an input may be a URL with a password
    )

    broker: str = Field(
        default=DEFAULT_BROKER,
        description="kafka://[user:password@]host:port[,host:port] or embedded:///path/to/file.db",
    )
    topic: str = Field(default="journey.touchpoints", min_length=1, description="The log of record")
    group: str = Field(
        default="journey-views",
        min_length=1,
        description="The engine's consumer group (run, serve); read-only commands never join it",
    )
    partitions: StrictCount = Field(default=6, ge=1, description="Partitions when creating topics")
    cache_size: StrictCount = Field(
        default=20_000,
        ge=1,
        description="Customers a writer keeps folded in memory (~6 KB each for a short "
        "history); passed to the writer's store (run, serve, rebuild, demo)",
    )
    cache_weight: StrictCount = Field(
        default=300_000,
        ge=1,
        description="What the customers a writer keeps folded may weigh together: touchpoints "
        "folded plus 12 a customer (~0.43 KB each); passed to the writer's store",
    )
    rebuild_processes: StrictCount | None = Field(
        default=None,
        ge=1,
        description="Processes a rebuild folds the partitions in (each its own partitions, "
        "all into the one new store; at most one per partition); 1 folds them all in the "
        "rebuild's own process. Unset: two where the machine has two cores or more (at 1M "
        "touchpoints 1.04-1.69x one process's rate, their memory summed within one "
        "process's 300 MiB: docs/BENCHMARKS.md), "
        "else one",
    )
    store: str = Field(
        default="sqlite:///journey-views.db",
        description="Projection store: sqlite:///relative.db, sqlite:////absolute.db or "
        "postgresql://user[:password]@host:port/database",
    )
    allowed_lateness: float = Field(
        default=300,
        ge=0,
        allow_inf_nan=False,
        description="Seconds a touchpoint may arrive after later ones and still count before "
        "the promise keeper decides a deadline (event time)",
    )
    idle_timeout: float = Field(
        default=30,
        gt=0,
        allow_inf_nan=False,
        description="Seconds without new event time after which a partition read to its head "
        "follows the others' clocks, and the wall clock once all are idle",
    )
    rules: Path | None = Field(
        default=None,
        description="A JSON file of service rules (domain/rules.py): reply targets, business "
        "hours; read by the commands that judge deadlines",
    )
    log_format: Literal["console", "json"] = Field(default="console")
    log_level: LogLevel = Field(default="info")
    max_future: timedelta = Field(
        default=DEFAULT_MAX_FUTURE,
        ge=timedelta(0),
        le=timedelta(days=365),
        description="How far after now a touchpoint's occurred_at may lie (clock skew), "
        "as an ISO 8601 duration (P1D, PT6H); the same at emit, POST /events and the consumer",
    )
    kafka_password: SecretStr | None = Field(
        default=None, description="SASL password (or put it in the broker URL); never logged"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN",
        description="SASL mechanism for the broker URL's user: PLAIN, SCRAM-SHA-256 or "
        "SCRAM-SHA-512 (use TLS with PLAIN: it sends the password as it is)",
    )
    kafka_tls: bool = Field(
        default=False, description="Talk TLS to the broker (SSL, or SASL_SSL with a user)"
    )
    kafka_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the broker's certificate (TLS); "
        "the system's trust store when not given",
    )
    kafka_cert_file: Path | None = Field(
        default=None, description="PEM client certificate, when the broker asks for one (TLS)"
    )
    kafka_key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate (TLS)"
    )
    kafka_key_password: SecretStr | None = Field(
        default=None, description="Password of the client key file, if it has one; never logged"
    )
    kafka_fetch_kib: StrictCount = Field(
        default=1024,
        ge=1,
        le=1024 * 1024,
        description="KiB a consumer fetches of one partition at once (8 partitions' worth "
        "a fetch); 256 took 26-36 MiB off a 1M rebuild's peak memory for 5 % more CPU in "
        "one process and 82 % more on two (docs/BENCHMARKS.md)",
    )
    console_time_zone: str = Field(
        default="Europe/Oslo",
        description="IANA time zone the agent console shows times in, unless an agent "
        "chose another (the console offers the browser's)",
    )

    allowed_hosts: str = Field(
        default="localhost,127.0.0.1,::1",
        description="Comma-separated host names the query service answers to (the Host "
        "header, port aside); '*' answers any (only behind a proxy that checks it)",
    )

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("log_level", "log_format"):
                if isinstance(data.get(name), str):
                    data = {**data, name: data[name].strip().lower()}
        return data

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, url: str) -> str:
        try:
            parse_log_url(url)
        except LogError as exc:
            raise ValueError(str(exc)) from None
        return url.strip()

    @field_validator("store")
    @classmethod
    def _check_store(cls, url: str) -> str:
        _check_store_url(url)
        return url

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: str) -> str:
        names = [h.strip() for h in value.split(",") if h.strip()]
        if not names:
            raise ValueError("name at least one host (e.g. localhost,127.0.0.1,::1)")
        for name in names:
            if name != "*" and (len(name) > 253 or any(c in name for c in "/@ ")):
                raise ValueError(f"{name!r} is not a host name")
        return value

    @field_validator("console_time_zone")
    @classmethod
    def _check_zone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name!r}: use an IANA name such as Europe/Oslo or UTC"
            ) from None
        return name.strip()

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Settings:
        files = {
            "kafka_ca_file": self.kafka_ca_file,
            "kafka_cert_file": self.kafka_cert_file,
            "kafka_key_file": self.kafka_key_file,
        }
        given = [name for name, path in files.items() if path is not None]
        if given and not self.kafka_tls:
            names = ", ".join(f"JOURNEY_{n.upper()}" for n in given)
            raise ValueError(f"{names} given without TLS: set JOURNEY_KAFKA_TLS=true too")
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise ValueError(f"JOURNEY_{name.upper()}: no file at {str(path)!r}")
        if (self.kafka_cert_file is None) != (self.kafka_key_file is None):
            raise ValueError(
                "a client certificate needs both JOURNEY_KAFKA_CERT_FILE and JOURNEY_KAFKA_KEY_FILE"
            )
        if self.kafka_sasl_mechanism != "PLAIN":
            parsed = parse_log_url(self.broker)
            if parsed.scheme == "kafka" and not parsed.username:
                raise ValueError(
                    f"JOURNEY_KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism} needs a user: "
                    "put it in the broker URL, kafka://user@host:port"
                )
        return self

    @model_validator(mode="after")
    def _move_secrets(self) -> Settings:
        parsed = parse_log_url(self.broker)
        if parsed.password is not None:
            # The secret leaves the URL: broker is printed in logs and messages.
            register_secret(parsed.password)
            object.__setattr__(self, "broker", str(parsed))
            if self.kafka_password is None:
                object.__setattr__(self, "kafka_password", SecretStr(parsed.password))
        for secret in (self.kafka_password, self.kafka_key_password):
            if secret is not None:
                register_secret(secret.get_secret_value())
        return self

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def audit_topic(self) -> str:
        """Who read which customer, when (journey/security/audit.py)."""
        return f"{self.topic}.audit"

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Defaults < JOURNEY_* environment < ``overrides`` (None means "not given").
        Raises ConfigError with one line naming every wrong setting."""
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**given)  # type: ignore[arg-type]  # checked by the model itself
        except ValidationError as exc:
            raise ConfigError(f"bad configuration: {describe_validation_error(exc)}") from None

    def safe_dict(self) -> dict[str, object]:
        """For logs: secrets masked, passwords in URLs redacted."""
        data = self.model_dump()
        data["broker"] = redact_url(self.broker)
        data["store"] = redact_url(self.store)
        data["kafka_password"] = "***" if self.kafka_password else None
        data["kafka_key_password"] = "***" if self.kafka_key_password else None
        return data

    def store_path(self) -> Path:
        """The SQLite file (for what only a file has: the demo's reset, file checks)."""
        return Path(self.store.removeprefix("sqlite:///"))

    def store_address(self) -> StoreAddress:
        """The store: a SQLite file's path, or the PostgreSQL URL as given."""
        if is_postgres(self.store):
            return self.store
        return self.store_path()

    def open_log(self, *, must_exist: bool = False, timeout_s: float | None = None) -> Log:
        """The log ``broker`` names, with the SASL password, mechanism and TLS settings."""
        from consumers.kafka_log import KafkaSecurity

        password = self.kafka_password.get_secret_value() if self.kafka_password else None
        security = KafkaSecurity(
            mechanism=self.kafka_sasl_mechanism,
            tls=self.kafka_tls,
            ca_file=None if self.kafka_ca_file is None else str(self.kafka_ca_file),
            cert_file=None if self.kafka_cert_file is None else str(self.kafka_cert_file),
            key_file=None if self.kafka_key_file is None else str(self.kafka_key_file),
            key_password=(
                self.kafka_key_password.get_secret_value() if self.kafka_key_password else None
            ),
        )
        return open_log(
            self.broker,
            password=password,
            must_exist=must_exist,
            timeout_s=timeout_s,
            security=security,
            partition_fetch_bytes=self.kafka_fetch_kib * 1024,
        )


def _check_store_url(url: str) -> None:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(
            f"store {redact(url)!r} has no scheme: use sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    if scheme in {"postgresql", "postgres"}:
        if not urlsplit(url).hostname:
            raise ValueError(
                f"store {redact(url)!r} names no host: use "
                "postgresql://user[:password]@host:port/database"
            )
        return
    if scheme != "sqlite":
        raise ValueError(
            f"store URL scheme {scheme!r} is unknown: use sqlite:///relative.db, "
            "sqlite:////absolute/path.db or postgresql://user@host:port/database"
        )
    if not rest.startswith("/") or rest == "/":
        raise ValueError(
            f"store {redact(url)!r} names no file: use sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
