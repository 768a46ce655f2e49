"""Running the app under uvicorn: in the foreground (`journey serve`, `journey demo --serve`)
or on a background thread (tests, the latency benchmark)."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

import uvicorn
from fastapi import FastAPI

__all__ = ["RunningServer", "bind", "serve_forever", "start_in_thread"]


def _closing(app: FastAPI) -> None:
    """Tell the service it is going down, so live streams end now instead of being cut off
    when uvicorn's graceful-shutdown timeout runs out."""
    service = getattr(app.state, "service", None)
    if service is not None:
        service.closing.set()


class _Server(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, app: FastAPI, on_ready: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self.app = app
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.on_ready is not None and not self.should_exit:
            self.on_ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        _closing(self.app)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal after shutting down, so the process would die of it;
        # like `journey run`, a SIGTERM/SIGINT is a clean stop here: exit status 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket first, so a taken port fails before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # IPPROTO_TCP, and without it every keep-alive answer waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # logging is configured by the entry point (structlog)
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,  # live streams (SSE) never end on their own
        ws="none",
    )


def serve_forever(
    app: FastAPI, host: str, port: int, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM; ``on_ready`` gets the base URL once requests are taken."""
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{actual}"
    server = _Server(_config(app, host, actual), app, (lambda: on_ready(url)) if on_ready else None)
    server.run(sockets=[sock])


@dataclass
class RunningServer:
    url: str
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout_s: float = 10.0) -> None:
        _closing(self.app)
        self.server.should_exit = True
        self.thread.join(timeout_s)


def start_in_thread(
    app: FastAPI, host: str = "127.0.0.1", timeout_s: float = 60.0
) -> RunningServer:
    """Serve on a free port on a background thread; returns once it takes requests."""
    sock = bind(host, 0)
    port = sock.getsockname()[1]
    server = _Server(_config(app, host, port), app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="journey-http", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the query service did not start (see the log above)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the query service did not start within {timeout_s} s")
        time.sleep(0.01)
    return RunningServer(f"http://{host}:{port}", app, server, thread)
