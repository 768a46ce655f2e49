"""The benchmark workload (bench/workload.py): the same seed gives the same bytes, the
shape is the issue's (a few customers with 10,000 touchpoints, most quiet), and every
message is one the engine accepts, in each customer's time order."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench.workload import Shape, ensure_workload, plan, read_batches
from domain.bounds import Bounds
from domain.envelope import decode, encode


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes(tmp_path: Path) -> None:
    shape = Shape.for_events(1500)
    first = ensure_workload(tmp_path / "a", shape, seed=7)
    again = ensure_workload(tmp_path / "b", shape, seed=7)
    other = ensure_workload(tmp_path / "c", shape, seed=8)
    assert first.path.read_bytes() == again.path.read_bytes()
    assert first.sha256 == again.sha256 != other.sha256
    # the second call reads the cache, with the same facts
    cached = ensure_workload(tmp_path / "a", shape, seed=7)
    assert cached.facts() == first.facts()


def test_at_100k_a_few_customers_have_10000_touchpoints_and_most_a_handful() -> None:
    shape = Shape.for_events(100_000)
    customers = plan(shape, seed=2026, prefix="bench")
    sizes = Counter(n for _, n in customers)
    assert sizes[10_000] == 2 and sizes[1_000] == 5
    assert sum(n for _, n in customers) == 100_000
    quiet = [n for _, n in customers if n < 1_000]
    assert max(quiet) <= 12 and len(quiet) > 10_000


def test_every_message_decodes_round_trips_and_keeps_each_customers_time_order(
    tmp_path: Path,
) -> None:
    shape = Shape.for_events(3000)
    workload = ensure_workload(tmp_path, shape, seed=1)
    bounds = Bounds(datetime.now(UTC))
    last: dict[str, datetime] = {}
    counts: Counter[str] = Counter()
    log_bytes = 0
    for batch in read_batches(workload.path, 700):
        for line in batch:
            tp = decode(line, bounds)
            assert encode(tp) == line  # the bare producer sends what the emitter would
            assert tp.occurred_at >= last.get(tp.customer_id, tp.occurred_at)
            last[tp.customer_id] = tp.occurred_at
            counts[tp.customer_id] += 1
            log_bytes += len(tp.customer_id.encode()) + len(line)
    assert sum(counts.values()) == 3000 == shape.events
    assert counts == Counter(dict(plan(shape, seed=1, prefix="bench")))
    assert log_bytes == workload.log_bytes
    assert len(workload.types) >= 15  # the catalogue's mix, not one type repeated
    assert counts[workload.heavy_ids[0]] == shape.heavy_size
