"""Logs (Kafka, embedded), runners and dead-letter handling."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from consumers.log import Log, LogError

if TYPE_CHECKING:
    from consumers.kafka_log import KafkaSecurity

__all__ = ["LogUrl", "open_log", "parse_log_url"]

_USAGE = "use kafka://host:port[,host:port] or embedded:///path/to/file.db"


@dataclass(frozen=True)
class LogUrl:
    """A broker URL taken apart. ``password`` is the only secret: ``str(self)`` leaves it out."""

    scheme: str
    hosts: tuple[str, ...] = ()
    path: str = ""
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        if self.scheme == "kafka":
            user = f"{self.username}@" if self.username else ""
            return f"kafka://{user}{','.join(self.hosts)}"
        return f"embedded://{self.path}"


def parse_log_url(url: str) -> LogUrl:
    """Check a broker URL without touching the network or the disk; raises LogError saying
    what is wrong (never echoing a password).

    ``kafka://[user[:password]@]host:port[,host:port]`` (``;`` also separates hosts; user and
    password are SASL/PLAIN credentials) or ``embedded:///path/to/file.db``
    (``embedded://relative.db`` is relative to the cwd).
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        shown = url if "@" not in url else "<redacted>"
        raise LogError(f"broker URL {shown!r} has no scheme: {_USAGE}")
    if scheme == "kafka":
        userinfo, at, hostlist = rest.rpartition("@")
        username = password = None
        if at:
            username, colon, secret = userinfo.partition(":")
            password = secret if colon else None
            if not username:
                raise LogError(f"broker URL kafka://…@{hostlist}: empty user name before '@'")
        safe = f"kafka://{username + '@' if username else ''}{hostlist}"
        hosts = [h.strip() for h in hostlist.replace(";", ",").split(",") if h.strip()]
        if not hosts:
            raise LogError(f"broker URL {safe!r} names no host: use kafka://host:port")
        for host in hosts:
            name, colon, port = host.rpartition(":")
            if not colon or not name or not port.isdigit() or not 0 < int(port) < 65536:
                raise LogError(f"broker URL {safe!r}: {host!r} is not host:port (port 1-65535)")
            if "/" in host or "?" in host:
                raise LogError(f"broker URL {safe!r}: {host!r} is not host:port")
        return LogUrl("kafka", hosts=tuple(hosts), username=username, password=password)
    if scheme == "embedded":
        if not rest:
            raise LogError(f"broker URL {url!r} names no file: use embedded:///path/to/file.db")
        return LogUrl("embedded", path=rest)
    shown = url if "@" not in url else f"{scheme}://<redacted>"
    raise LogError(f"broker URL {shown!r}: unknown scheme {scheme!r}; {_USAGE}")


def open_log(
    url: str,
    *,
    password: str | None = None,
    must_exist: bool = False,
    timeout_s: float | None = None,
    security: KafkaSecurity | None = None,
    partition_fetch_bytes: int | None = None,
) -> Log:
    """Open the log a broker URL names (see :func:`parse_log_url`).

    ``password`` (SASL) is used when the URL carries none. With ``must_exist`` an embedded
    log file that is not there is an error instead of being created: commands that only
    read must not make a new, empty log out of a mistyped path. ``timeout_s`` bounds each
    call to a Kafka broker (the adapter's default otherwise). ``security`` says how to reach a
    secured broker (SASL mechanism, TLS and its files); the URL's user name (and password)
    go into it. ``partition_fetch_bytes``: what a Kafka consumer fetches of a partition at
    once (the adapter's default otherwise).
    """
    parsed = parse_log_url(url)
    if parsed.scheme == "kafka":
        from consumers.kafka_log import KafkaLog, KafkaSecurity

        secret = parsed.password if parsed.password is not None else password
        if parsed.username:
            security = replace(
                security or KafkaSecurity(), username=parsed.username, password=secret or ""
            )
        options: dict[str, Any] = {}
        if timeout_s is not None:
            options["timeout_s"] = timeout_s
        if partition_fetch_bytes is not None:
            options["partition_fetch_bytes"] = partition_fetch_bytes
        return KafkaLog(list(parsed.hosts), security=security, **options)
    from consumers.embedded_log import EmbeddedLog

    if must_exist and not os.path.isfile(parsed.path):
        raise LogError(
            f"no embedded log at {parsed.path!r}: check --broker / JOURNEY_BROKER "
            "(`journey emit` or `journey run` creates one)"
        )
    return EmbeddedLog(parsed.path)
