"""What the browser tests of another page's requests share: a console serving the seed
stories, and a second local HTTP server on another port (another origin, but the same
site) that serves one attacker's page."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from journey.service import ServiceOptions
from tests.service.helpers import Running, embedded_settings, play_stories, running_service


@contextmanager
def stories_console(tmp_path: Path) -> Iterator[Running]:
    directory = play_stories(tmp_path / "stories")
    options = ServiceOptions(max_wait_ms=1000, sample_interval_s=0.25, live_interval_s=0.25)
    with running_service(embedded_settings(directory), options) as running:
        yield running


@contextmanager
def page_server(body: bytes) -> Iterator[str]:
    """Serve ``body`` as HTML at every path of 127.0.0.1 on a free port; yields its URL."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
