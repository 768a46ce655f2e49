"""Logs (Kafka, embedded), runners and dead-letter handling."""

from __future__ import annotations

from consumers.log import Log, LogError

__all__ = ["open_log"]


def open_log(url: str) -> Log:
    """Open the log a broker URL names.

    ``kafka://host:port[,host:port]`` (``;`` also separates hosts) or
    ``embedded:///path/to/file.db`` (``embedded://relative.db`` is relative to the cwd).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise LogError(
            f"broker URL {url!r} has no scheme: use kafka://host:port or embedded:///path.db"
        )
    if scheme == "kafka":
        from consumers.kafka_log import KafkaLog

        hosts = [h.strip() for h in rest.replace(";", ",").split(",") if h.strip()]
        if not hosts:
            raise LogError(f"broker URL {url!r} names no host: use kafka://host:port")
        for host in hosts:
            name, colon, port = host.rpartition(":")
            if not colon or not name or not port.isdigit():
                raise LogError(f"broker URL {url!r}: {host!r} is not host:port")
        return KafkaLog(hosts)
    if scheme == "embedded":
        from consumers.embedded_log import EmbeddedLog

        if not rest:
            raise LogError(f"broker URL {url!r} names no file: use embedded:///path/to/file.db")
        return EmbeddedLog(rest)
    raise LogError(f"broker URL {url!r}: unknown scheme {scheme!r} (use kafka or embedded)")
