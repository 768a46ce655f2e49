"""Emit → visible latency of the query service on a real Kafka, with a baseline side by side.

Run (a broker on 127.0.0.1:19092: `make kafka`):

    .venv/bin/python bench/latency_bench.py                      # 1,000 rounds, 300 queries
    .venv/bin/python bench/latency_bench.py --rounds 2000 --json artifacts/latency.json

In one run, interleaved round by round so that every path sees the same broker:

* **baseline** — the raw log round trip without any view: produce one message (acks=all),
  a consumer on its own thread polls it. The floor any emit → visible path stands on.
* **emitter → GET ?after=** — the Python emitter produces one touchpoint, then
  ``GET /customers/{id}?after=<token>`` answers once the view has folded it (runner, store
  commit, freshness wait, view, HTTP).
* **POST /events → GET ?after=** — the same, emitting over HTTP too.

Then the query latency of one customer with 1,000 touchpoints (a few hundred GETs, with the
default head wait, which reads the partition's high-water mark from Kafka on each request,
and with a token).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from consumers.kafka_log import KafkaLog
from consumers.log import OutgoingMessage
from domain import catalogue as c
from domain.envelope import Touchpoint, encode, new_touchpoint
from journey.emitter import Emitter
from journey.logs import configure_logging
from journey.security.keys import KeyStore


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p90_ms": round(pct(ms, 0.90), 2),
        "p99_ms": round(pct(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(http: httpx.Client, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"journey serve exited with {server.returncode}")
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("journey serve did not come up within 60 s")


class RawConsumer:
    """The baseline's reader: a consumer of its own group polling on its own thread, as the
    runner does, noting when each offset arrived."""

    def __init__(self, log: KafkaLog, topic: str) -> None:
        self.consumer = log.consumer(f"bench-raw-{uuid.uuid4().hex[:8]}", [topic])
        self.seen: dict[tuple[int, int], float] = {}
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            messages = self.consumer.poll(0.05, 500)
            now = time.perf_counter()
            if messages:
                with self.cond:
                    for m in messages:
                        self.seen[(m.partition, m.offset)] = now
                    self.cond.notify_all()

    def wait(self, partition: int, offset: int, timeout_s: float = 10.0) -> float:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while (partition, offset) not in self.seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"raw consumer never saw {partition}:{offset}")
                self.cond.wait(remaining)
            return self.seen.pop((partition, offset))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.consumer.close()


def inquiry(customer_id: str, subject: str, at: datetime | None = None) -> Touchpoint:
    return new_touchpoint(
        c.InquiryReceived(case_id=f"k-{uuid.uuid4().hex[:8]}", channel="email", subject=subject),
        customer_id=customer_id,
        occurred_at=at or datetime.now(UTC),
        source="bench",
    )


def long_history(customer_id: str, count: int) -> list[Touchpoint]:
    """A long-standing customer: cases opened, auto-acknowledged, answered and resolved."""
    start = datetime.now(UTC) - timedelta(days=count)
    out: list[Touchpoint] = []
    for i in range(count):
        case = f"case-{i // 4}"
        at = start + timedelta(hours=i)
        step = i % 4
        data: c.TouchpointData
        if step == 0:
            data = c.InquiryReceived(case_id=case, channel="email", subject=f"Question {i // 4}")
        elif step == 1:
            data = c.AutoAcknowledgementSent(case_id=case, channel="email")
        elif step == 2:
            data = c.ReplySent(
                case_id=case, channel="email", agent="Agent A", team="Support", country="SE"
            )
        else:
            data = c.CaseResolved(case_id=case, resolution="answered")
        out.append(new_touchpoint(data, customer_id=customer_id, occurred_at=at, source="bench"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--broker",
        default="kafka://" + os.environ.get("JOURNEY_TEST_KAFKA", "127.0.0.1:19092"),
    )
    parser.add_argument("--rounds", type=int, default=1000, help="emit → visible round trips")
    parser.add_argument("--queries", type=int, default=300, help="GETs of the big customer")
    parser.add_argument("--touchpoints", type=int, default=1000, help="the big customer's size")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    configure_logging("console", "warning")

    hosts = args.broker.removeprefix("kafka://").split(",")
    log = KafkaLog(hosts)
    run = uuid.uuid4().hex[:8]
    topic, raw_topic = f"bench.{run}", f"bench.raw.{run}"
    log.ensure_topics([topic, f"{topic}.dlq", raw_topic], 6)
    workdir = Path(tempfile.mkdtemp(prefix="journey-bench-"))
    store = workdir / "views.db"
    # The service runs in its own process, as `journey serve` would: the figures are what a
    # client sees, not skewed by the benchmark's own threads sharing one interpreter.
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("journey")),
            "--broker",
            log.url,
            "--topic",
            topic,
            "--store",
            f"sqlite:///{store}",
            "--log-level",
            "warning",
            "serve",
            "--port",
            str(port),
            "--max-wait-ms",
            "5000",
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    # An admin key (it reads and emits), kept beside the store as `journey keys create` does.
    keys = KeyStore(store)
    _, secret = keys.create("admin", f"bench-{port}")
    keys.close()
    http = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {secret}"})
    wait_until_up(http, server)
    emitter = Emitter(log, topic=topic, source="bench")
    raw = RawConsumer(log, raw_topic)
    print(f"broker {log.url} · topic {topic} · service {url} (pid {server.pid}) · store {store}")

    try:
        # Warm up: every consumer has joined its group and been assigned its partitions.
        for i in range(20):
            (pos,) = emitter.emit_touchpoints([inquiry(f"warm-{i}", "warm-up")])
            response = http.get(f"/customers/warm-{i}", params={"after": pos.token()})
            assert response.status_code == 200, response.text
            (rpos,) = log.produce(raw_topic, [OutgoingMessage(key=b"warm", value=b"x")])
            raw.wait(rpos.partition, rpos.offset, timeout_s=60)

        baseline: list[float] = []
        via_emitter: list[float] = []
        via_http: list[float] = []
        post_only: list[float] = []
        waited: list[float] = []
        print(f"emit → visible: {args.rounds} rounds of each path, interleaved")
        for i in range(args.rounds):
            customer = f"cust-{i % 97}"
            # baseline: produce → consumed, no view
            value = encode(inquiry(customer, f"raw {i}"))
            started = time.perf_counter()
            (rpos,) = log.produce(raw_topic, [OutgoingMessage(key=customer.encode(), value=value)])
            baseline.append(raw.wait(rpos.partition, rpos.offset) - started)

            # the Python emitter → GET with its token
            tp = inquiry(customer, f"emitted {i}")
            started = time.perf_counter()
            (pos,) = emitter.emit_touchpoints([tp])
            body = http.get(f"/customers/{customer}", params={"after": pos.token()}).json()
            via_emitter.append(time.perf_counter() - started)
            if str(tp.event_id) not in {e["event_id"] for e in body["data"]["timeline"]["entries"]}:
                raise AssertionError(f"round {i}: the emitted touchpoint is not in the answer")
            waited.append(body["waited_ms"] / 1000)

            # POST /events → GET with the token
            tp = inquiry(customer, f"posted {i}")
            envelope = tp.to_envelope().model_dump(mode="json", exclude_none=True)
            started = time.perf_counter()
            posted = http.post("/events", json=envelope)
            post_only.append(time.perf_counter() - started)
            token = posted.json()["token"]
            body = http.get(f"/customers/{customer}", headers={"X-Journey-Position": token}).json()
            via_http.append(time.perf_counter() - started)
            if str(tp.event_id) not in {e["event_id"] for e in body["data"]["timeline"]["entries"]}:
                raise AssertionError(f"round {i}: the posted touchpoint is not in the answer")
            if (i + 1) % 100 == 0:
                print(
                    f"  {i + 1:>5}/{args.rounds}  baseline p50 "
                    f"{statistics.median(baseline) * 1000:.1f} ms · emitter→GET p50 "
                    f"{statistics.median(via_emitter) * 1000:.1f} ms · POST→GET p50 "
                    f"{statistics.median(via_http) * 1000:.1f} ms",
                    flush=True,
                )

        # One customer with a long history.
        big = "cust-with-history"
        history = long_history(big, args.touchpoints)
        print(f"query latency: {args.touchpoints} touchpoints for {big} …", flush=True)
        token = ""
        for start in range(0, len(history), 500):
            chunk = history[start : start + 500]
            body_lines = "\n".join(
                json.dumps(t.to_envelope().model_dump(mode="json", exclude_none=True))
                for t in chunk
            )
            posted = http.post(
                "/events", content=body_lines, headers={"content-type": "application/x-ndjson"}
            )
            assert posted.status_code == 201, posted.text
            token = posted.json()["token"]
        first = http.get(f"/customers/{big}", params={"after": token}).json()
        assert first["data"]["touchpoints"] == args.touchpoints, first["data"]["touchpoints"]
        size = len(http.get(f"/customers/{big}").content)
        head_wait: list[float] = []
        with_token: list[float] = []
        timeline_page: list[float] = []
        for i in range(args.queries):
            started = time.perf_counter()
            response = http.get(f"/customers/{big}")
            head_wait.append(time.perf_counter() - started)
            assert response.status_code == 200 and response.json()["fresh"] is True
            started = time.perf_counter()
            response = http.get(f"/customers/{big}", params={"after": token})
            with_token.append(time.perf_counter() - started)
            started = time.perf_counter()
            response = http.get(f"/customers/{big}/timeline", params={"page": 1 + i % 20})
            timeline_page.append(time.perf_counter() - started)
        metrics = http.get("/metrics").text
    finally:
        raw.close()
        http.close()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        log.close()

    results: dict[str, Any] = {
        "broker": log.url,
        "rounds": args.rounds,
        "emit_to_visible": {
            "baseline_produce_to_consume_no_view": summary(baseline),
            "emitter_then_get_after_token": summary(via_emitter),
            "post_events_then_get_after_token": summary(via_http),
            "post_events_alone": summary(post_only),
            "freshness_wait_inside_get": summary(waited),
        },
        "customer_with_history": {
            "touchpoints": args.touchpoints,
            "response_bytes": size,
            "get_default_head_wait": summary(head_wait),
            "get_with_token": summary(with_token),
            "get_timeline_page": summary(timeline_page),
        },
    }
    print()
    print(f"{'path':<44}{'n':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    rows = [
        ("baseline: produce → consumed (no view)", baseline),
        ("emitter → GET ?after=token", via_emitter),
        ("POST /events → GET (X-Journey-Position)", via_http),
        ("  of which POST /events alone", post_only),
        ("  freshness wait inside the GET", waited),
        (f"GET customer, {args.touchpoints} tp, head wait", head_wait),
        (f"GET customer, {args.touchpoints} tp, with token", with_token),
        (f"GET timeline page, {args.touchpoints} tp", timeline_page),
    ]
    for name, samples in rows:
        s = summary(samples)
        print(
            f"{name:<44}{s['n']:>6}{s['p50_ms']:>9.1f}{s['p90_ms']:>9.1f}"
            f"{s['p99_ms']:>9.1f}{s['max_ms']:>9.1f}"
        )
    print(f"(customer view response: {size} bytes, timeline page of 50)")
    latency = [line for line in metrics.splitlines() if "_count" in line and "route=" in line]
    print("server-side request counts:", "; ".join(latency))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
