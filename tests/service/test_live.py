"""Live updates over Server-Sent Events: the customer's view is pushed when it changes, and
a stalled runner shows up as a freshness event, never as a silently old view."""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.service.helpers import Running, envelope, inquiry

_LINE_END = re.compile(r"\r\n|\r|\n")


class Events:
    """Reads an SSE stream on a thread; ``next(name)`` returns the next event of that name."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _lines(self) -> Iterator[str]:
        """Lines as the SSE spec ends them: at CR LF, CR or LF only (httpx's iter_lines
        would also cut at U+2028, U+2029, U+0085, as str.splitlines does)."""
        buffer = ""
        for chunk in self.response.iter_text():
            buffer += chunk
            parts = _LINE_END.split(buffer)
            # a trailing CR may be the first half of CR LF: keep it for the next chunk
            buffer = parts.pop()
            if buffer == "" and parts and chunk.endswith("\r"):
                buffer = parts.pop() + "\r"
            yield from parts

    def _read(self) -> None:
        name, data = "message", []
        try:
            for line in self._lines():
                if line == "":
                    if data:
                        self.events.put((name, "\n".join(data)))
                    name, data = "message", []
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
        except httpx.HTTPError:
            pass

    def next(self, name: str, timeout_s: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {name!r} event within {timeout_s} s"
            try:
                got, data = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if got == name:
                payload: dict[str, Any] = json.loads(data)
                return payload


@contextmanager
def stream(svc: Running, url: str) -> Iterator[Events]:
    with (
        httpx.Client(
            base_url=svc.server.url, timeout=httpx.Timeout(30, read=60), headers=svc.http.headers
        ) as client,
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Events(response)


def test_the_view_is_pushed_when_it_changes(svc: Running) -> None:
    with stream(svc, "/customers/sven.berg@example.se/events") as events:
        first = events.next("view")
        assert first["fresh"] is True and first["data"]["customer_id"] == "cust-sven"
        for i in range(3):
            env = envelope("cust-sven", f"live question {i}")
            started = time.monotonic()
            assert svc.http.post("/events", json=env).status_code == 201
            pushed = events.next("view")
            assert env["event_id"] in {e["event_id"] for e in pushed["data"]["timeline"]["entries"]}
            assert pushed["fresh"] is True
            assert time.monotonic() - started < 2.0


def test_other_customers_do_not_trigger_a_push(svc: Running) -> None:
    with stream(svc, "/customers/cust-erik/events") as events:
        events.next("view")
        for i in range(5):
            svc.emitter.emit_touchpoints([inquiry("cust-someone-else", f"noise {i}")])
        mine = inquiry("cust-erik", "finally, an answer?")
        svc.emitter.emit_touchpoints([mine])
        pushed = events.next("view")
        assert str(mine.event_id) in {e["event_id"] for e in pushed["data"]["timeline"]["entries"]}


def test_html_fragments_for_the_console(svc: Running) -> None:
    with stream(svc, "/customers/cust-lina/events?format=html") as events:
        first = events.next("view")
        assert "<h1" in first["html"] and "Lina Ek" in first["html"]
        assert "Up to date" in first["badge"] and first["fresh"] is True
        svc.emitter.emit_touchpoints([inquiry("cust-lina", "<b>not bold</b> & escaped")])
        pushed = events.next("view")
        assert "&lt;b&gt;not bold&lt;/b&gt; &amp; escaped" in pushed["html"]
        assert "<b>not bold</b>" not in pushed["html"]


def test_a_stalled_runner_is_pushed_as_lag(make_service: Callable[..., Running]) -> None:
    svc = make_service(max_wait_ms=300, live_interval_s=0.2, sample_interval_s=0.2)
    assert svc.service.thread is not None
    with stream(svc, "/customers/cust-anders/events") as events:
        assert events.next("view")["fresh"] is True
        svc.service.thread.pause()
        tp = inquiry("cust-anders", "while stalled")
        svc.emitter.emit_touchpoints([tp])
        behind = events.next("freshness", timeout_s=5)
        assert behind["fresh"] is False and behind["lag"]["events"] == 1
        svc.service.thread.resume()
        caught_up = events.next("view")
        assert caught_up["fresh"] is True
        assert str(tp.event_id) in {e["event_id"] for e in caught_up["data"]["timeline"]["entries"]}


def test_line_separators_in_text_survive_the_stream(svc: Running) -> None:
    """U+2028, U+2029 and U+0085 are line ends to Python's str.splitlines, not to SSE (only
    CR and LF are): a stream that split on them cut the JSON of a view apart (issue 9 item 6).
    Parsed as the SSE spec says, every one arrives intact in JSON and in the console's HTML."""
    texts = {f"sep-{ord(ch):04x}": f"before{ch}after {ch} end" for ch in "\u2028\u2029\u0085"}
    for fmt in ("json", "html"):
        with stream(svc, f"/customers/cust-lina/events?format={fmt}") as events:
            events.next("view")
            case_ids = []
            for name, text in texts.items():
                env = envelope("cust-lina", f"{name} {fmt}", body=text)
                case_ids.append(env["data"]["case_id"])
                response = svc.http.post("/events", json=env)
                assert response.status_code == 201, response.text
            while True:
                pushed = events.next("view")
                if fmt == "json":
                    said = {e.get("text") for e in pushed["data"]["timeline"]["entries"]}
                    if set(texts.values()) <= said:
                        break
                elif all(text in pushed["html"] for text in texts.values()):
                    break
