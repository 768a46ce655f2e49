"""Rebuild throughput, side by side with a bare consumer that only decodes.

Generates N touchpoints (a realistic mix across ~10,000 customers), emits them to a fresh
topic, then measures in the same run:

* baseline: one consumer reading every message and decoding it (``domain.envelope.decode``),
  no store: what the log and the decoder alone allow;
* rebuild: ``consumers.rebuild.rebuild`` into a fresh store (fold, aggregates, query tables,
  positions, one transaction per partition slice of each poll batch).

Run it (a real Kafka first: ``make kafka``):

    .venv/bin/python bench/rebuild_bench.py                        # 100,000 on local Kafka
    .venv/bin/python bench/rebuild_bench.py --events 20000 --broker embedded:///tmp/bench.db
    .venv/bin/python bench/rebuild_bench.py --events 20000 --profile   # + cProfile hotspots

Suggested Makefile target (not in the Makefile yet):

    bench: install kafka ## Rebuild benchmark: 100k touchpoints on the local Kafka
        $(BIN)/python bench/rebuild_bench.py --broker kafka://127.0.0.1:$(KAFKA_PORT)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from consumers import open_log
from consumers.log import Log
from consumers.rebuild import rebuild
from consumers.runner import RunnerStats
from domain import catalogue as c
from domain.envelope import Touchpoint, decode, new_touchpoint
from journey.emitter import Emitter
from journey.logs import configure_logging

PROGRESS_EVERY_S = 3.0


class Progress:
    """Prints ``label: done/total (rate/s)`` at most every few seconds, and at the end."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.started = self.last = time.monotonic()

    def __call__(self, done: int, total: int | None = None, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        total = total or self.total
        rate = done / (now - self.started) if now > self.started else 0.0
        pct = f" {100 * done / total:5.1f}%" if total else ""
        print(f"  {self.label}: {done:,}/{total:,}{pct}  {rate:,.0f}/s", flush=True)


# ---------------------------------------------------------------------- traffic


def _money(amount: int) -> c.Money:
    return c.Money(amount=Decimal(amount), currency="SEK")


def _journey(rng: random.Random, cid: str, t0: datetime) -> Iterator[c.TouchpointData]:
    """One customer's endless, plausible journey. Order and delivery traffic dominates,
    as in a shop; cases bring acknowledgements, replies, hand-offs, promises, repairs."""
    yield c.IdentityLinked(kind="name", value=f"Customer {cid}")
    if rng.random() < 0.6:
        yield c.IdentityLinked(kind="email", value=f"{cid}@example.com")
    products = ["Monitor U27", "Laptop X1", "TV OLED55", "Sofa Oslo", "Phone P8", "Jacket"]
    n = 0
    while True:
        n += 1
        product, serial = rng.choice(products), f"SN-{cid}-{n}"
        roll = rng.random()
        if roll < 0.45:
            order, ship = f"{cid}-o{n}", f"{cid}-o{n}-s"
            price = rng.randint(99, 15_000)
            yield c.OrderPlaced(
                order_id=order,
                total=_money(price),
                promised_delivery_by=t0 + timedelta(days=3 * n),
                lines=[
                    c.OrderLine(
                        sku=f"SKU-{products.index(product)}",
                        name=product,
                        unit_price=_money(price),
                        serial_number=serial,
                        batch=rng.choice(["2026-09", "2026-10", "2026-11"]),
                    )
                ],
            )
            yield c.OrderShipped(order_id=order, shipment_id=ship, carrier="PostNord")
            yield c.DeliveryAttempted(shipment_id=ship, carrier="PostNord")
            if rng.random() < 0.2:
                yield c.DeliveryFailed(shipment_id=ship, carrier="PostNord", reason="not home")
                yield c.DeliveryRescheduled(
                    shipment_id=ship, carrier="PostNord", new_location="pick-up point",
                    deliver_by=t0 + timedelta(days=3 * n + 2), promise_id=f"{ship}-r",
                )  # fmt: skip
            yield c.Delivered(shipment_id=ship, carrier="PostNord")
        elif roll < 0.9:
            case = f"{cid}-c{n}"
            channel = rng.choice(["email", "email", "phone", "chat", "web_form", "social"])
            team = rng.choice(["Support SE", "Support NO", "Support PL"])
            if roll < 0.7:
                yield c.InquiryReceived(
                    case_id=case, channel=channel, subject=f"Question {n}", team=team,
                    country=team[-2:],
                )  # fmt: skip
            else:
                yield c.ComplaintFiled(
                    case_id=case, channel=channel, product=product, serial_number_as_given=serial,
                    warranty_claim=True, team=team, country=team[-2:],
                )  # fmt: skip
            yield c.AutoAcknowledgementSent(case_id=case, channel="email")
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                yield c.ReplySent(
                    case_id=case, channel=channel, agent=f"agent-{rng.randint(1, 80)}",
                    team=team, country=team[-2:], awaiting_customer=rng.random() < 0.2,
                )  # fmt: skip
            if rng.random() < 0.1:
                yield c.CaseHandedOff(
                    case_id=case, from_team=team, from_country=team[-2:], to_team="Tier 2",
                    to_country="SE", escalation=True,
                )  # fmt: skip
            if rng.random() < 0.3:
                promise = f"{case}-p"
                yield c.PromiseMade(
                    promise_id=promise, case_id=case, what="call back", kind="callback",
                    due_by=t0 + timedelta(days=n, hours=rng.randint(1, 48)), made_by="agent",
                )  # fmt: skip
                if rng.random() < 0.6:
                    yield c.PromiseKept(promise_id=promise, kept_by="agent")
            if roll >= 0.7:
                for _ in range(rng.choice([0, 1, 1, 2, 3])):
                    yield c.RepairCompleted(case_id=case, product=product, serial_number=serial)
                if rng.random() < 0.2:
                    yield c.RefundIssued(case_id=case, amount=_money(rng.randint(50, 500)))
            if rng.random() < 0.7:
                yield c.CaseResolved(case_id=case, resolution="done")
                if rng.random() < 0.4:
                    yield c.SatisfactionRated(case_id=case, score=rng.randint(1, 5))
        else:
            review = f"{cid}-r{n}"
            yield c.PublicReviewPosted(
                review_id=review, platform="Trustpilot", rating=rng.randint(1, 5)
            )
            if rng.random() < 0.5:
                yield c.ReviewAnswered(review_id=review, answered_by="social team")


def generate(count: int, customers: int, seed: int) -> list[Touchpoint]:
    rng = random.Random(seed)  # noqa: S311 -- benchmark data, not secrets
    start = datetime.now(UTC) - timedelta(days=60)
    journeys: dict[str, tuple[Iterator[c.TouchpointData], list[datetime]]] = {}
    out: list[Touchpoint] = []
    report = Progress("generated", count)
    for i in range(count):
        cid = f"bench-{rng.randrange(customers):06d}"
        if cid not in journeys:
            t0 = start + timedelta(minutes=rng.randint(0, 30 * 24 * 60))
            journeys[cid] = (_journey(rng, cid, t0), [t0])
        script, clock = journeys[cid]
        clock[0] += timedelta(minutes=rng.randint(2, 600))
        out.append(
            new_touchpoint(
                next(script),
                customer_id=cid,
                occurred_at=clock[0],
                source="bench",
                event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            )
        )
        report(i + 1)
    report(count, final=True)
    return out


# ---------------------------------------------------------------------- measurements


def emit(log: Log, topic: str, touchpoints: list[Touchpoint], batch: int = 5000) -> float:
    emitter = Emitter(log, topic=topic, source="bench")
    report = Progress("emitted", len(touchpoints))
    started = time.monotonic()
    for i in range(0, len(touchpoints), batch):
        emitter.emit_touchpoints(touchpoints[i : i + batch])
        report(min(i + batch, len(touchpoints)))
    report(len(touchpoints), final=True)
    return time.monotonic() - started


def baseline(log: Log, topic: str, total: int) -> float:
    """Seconds for a bare consumer (fresh group) to read and decode every message."""
    consumer = log.consumer(f"bench-baseline-{uuid.uuid4().hex[:8]}", [topic])
    report = Progress("baseline", total)
    started, done = time.monotonic(), 0
    try:
        while done < total:
            for msg in consumer.poll(1.0, 2000):
                decode(msg.value)
                done += 1
            report(done)
            if time.monotonic() - started > 3600:
                raise SystemExit(f"baseline read only {done} of {total} in an hour")
    finally:
        consumer.close()
    report(done, final=True)
    return time.monotonic() - started


def store_size(path: Path) -> int:
    return sum(
        p.stat().st_size for p in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm")))
        if p.exists()
    )  # fmt: skip


def profiled(fn: Callable[[], object], top: int, out_file: Path | None) -> None:
    profile = cProfile.Profile()
    profile.runcall(fn)
    if out_file is not None:
        profile.dump_stats(out_file)
        print(f"profile written to {out_file} (python -m pstats {out_file})")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(top)
        print(f"\n--- cProfile, top {top} by {order} ---")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--broker", default="kafka://127.0.0.1:19092")
    parser.add_argument("--topic", default=None, help="default: a fresh bench.<random> topic")
    parser.add_argument("--store-dir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--batch-size", type=int, default=2000, help="rebuild poll batch")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--profile", action="store_true", help="cProfile the rebuild")
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--profile-out", type=Path, default=None, help="save the raw profile")
    args = parser.parse_args(argv)
    configure_logging("console", "warning")

    topic = args.topic or f"bench.{uuid.uuid4().hex[:10]}"
    store_dir = args.store_dir or Path(tempfile.mkdtemp(prefix="journey-bench-"))
    store_dir.mkdir(parents=True, exist_ok=True)
    log = open_log(args.broker)
    try:
        print(f"broker {args.broker}, topic {topic}, store dir {store_dir}", flush=True)
        print(f"generating {args.events:,} touchpoints across ~{args.customers:,} customers")
        touchpoints = generate(args.events, args.customers, args.seed)
        kinds = len({tp.type for tp in touchpoints})
        people = len({tp.customer_id for tp in touchpoints})
        print(f"  {kinds} touchpoint types, {people:,} customers")
        seconds = emit(log, topic, touchpoints)
        total = sum(log.high_watermarks(topic).values())
        print(f"  emitted {total:,} in {seconds:.1f} s ({total / seconds:,.0f}/s)", flush=True)
        del touchpoints

        print("baseline: read + decode, no store", flush=True)
        base_s = baseline(log, topic, total)
        base_rate = total / base_s

        print(f"rebuild: consumers.rebuild.rebuild, batch {args.batch_size}", flush=True)
        report = Progress("rebuilt", total)
        result: dict[str, tuple[Path, RunnerStats, float]] = {}

        def run() -> None:
            result["out"] = rebuild(
                log, store_dir / "views.db", topic=topic, dlq_topic=f"{topic}.dlq",
                batch_size=args.batch_size, progress=report,
            )  # fmt: skip

        if args.profile:
            profiled(run, args.profile_top, args.profile_out)
        else:
            run()
        new_file, stats, rebuild_s = result["out"]
        report(stats.processed, final=True)
        rebuild_rate = stats.processed / rebuild_s
        size = store_size(new_file)

        print("\n=== results ===")
        print(f"events                {total:,} ({people:,} customers)")
        print(f"baseline (decode)     {base_rate:>10,.0f} events/s   ({base_s:.1f} s)")
        print(f"rebuild               {rebuild_rate:>10,.0f} events/s   ({rebuild_s:.1f} s)")
        print(f"rebuild / baseline    {rebuild_rate / base_rate:>10.2f}")
        print(f"store                 {size / 2**20:>10.1f} MiB  ({new_file})")
        print(f"                      {size / max(total, 1):>10.0f} bytes/event")
    finally:
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
