"""A TCP relay of the tests' own in front of the real PostgreSQL, that can stop answering.

``database_away`` (test_postgres_outage.py) refuses connections at once, which is what a
stopped server on this machine looks like. A server on another machine that is down, hung
or cut off by the network looks different: the connection is accepted (or its SYN is
dropped) and nothing ever answers, so a client waits for its own timeouts. The shared
PostgreSQL is never touched: the relay takes the silence onto itself.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

__all__ = ["TcpGate", "gated_url"]


class TcpGate:
    """Relays 127.0.0.1:<port> to ``target``. ``silent()``: every open connection is
    dropped and new ones are accepted but never answered, until the block ends (then the
    held ones are closed, as a host that comes back resets what it no longer knows)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._held: list[socket.socket] = []
        self._silent = False
        self._stopped = False
        self.held_connections = 0  # how many connection attempts met the silence
        threading.Thread(target=self._accept, daemon=True, name="tcp-gate").start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._silent:
                    self._held.append(client)
                    self.held_connections += 1
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _drop(self, sockets: list[socket.socket]) -> None:
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    @contextmanager
    def silent(self) -> Iterator[None]:
        with self._lock:
            self._silent = True
            dropped, self._open = self._open, []
        self._drop(dropped)
        try:
            yield
        finally:
            with self._lock:
                self._silent = False
                held, self._held = self._held, []
            self._drop(held)

    def close(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            dropped, self._open = self._open + self._held, []
            self._held = []
        self._drop(dropped)


def gated_url(url: str, gate: TcpGate) -> str:
    """``url`` with its host and port replaced by the gate's."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{gate.port}" if user else f"127.0.0.1:{gate.port}"
    return parts._replace(netloc=netloc).geturl()


def target_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "127.0.0.1", parts.port or 5432)
