"""The promise keeper's work per tick, on every store (SQLite and a real PostgreSQL).

A keeper's tick must cost what is due now, not what is open: with many running clocks none
of which is due, or many breaches already recorded, a tick reads no more rows than with a
few (counted as rows the store's database returns, never as time). And asking the database
exactly for what is due must not change a single decision: the same breaches at the same
event times, each decided once, live and replayed at another pace — with business hours in
time zones at +14:00 and -12:00 and across a daylight-saving change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from consumers.embedded_log import EmbeddedLog
from consumers.rebuild import rebuild
from domain import catalogue as c
from domain.business_hours import WEEKDAYS, BusinessHours
from domain.envelope import Touchpoint, decode, new_touchpoint
from domain.rules import ServiceRules
from journey.pipeline import ManualClock, Pipeline
from projections.store import JourneyStore, StoreAddress

TOPIC = "keeper.due"
WEEKDAY_HOURS = {d: ["08:00-17:00"] for d in WEEKDAYS[:5]}
RULES = ServiceRules(
    first_reply_hours={"default": 24, "email": 8, "chat": 0.25, "phone": 1},
    next_reply_hours={"default": 24, "email": 4, "chat": 0.25},
    business_hours={
        "kiri": BusinessHours(time_zone="Pacific/Kiritimati", hours=WEEKDAY_HOURS),  # +14:00
        "baker": BusinessHours(  # -12:00 all year
            time_zone="Etc/GMT+12",
            hours={d: ["08:00-12:00", "13:00-16:00"] for d in WEEKDAYS[:5]},
        ),
        "sthlm": BusinessHours(
            time_zone="Europe/Stockholm", hours=WEEKDAY_HOURS, holidays=[date(2026, 4, 3)]
        ),
        # Open right across the night the clocks go forward (29 March 2026, 02:00 -> 03:00).
        "night": BusinessHours(
            time_zone="Europe/Stockholm", hours={"sat": ["00:00-24:00"], "sun": ["00:00-24:00"]}
        ),
    },
    business_time={"first_reply": ["*"], "next_reply": ["email"]},
)
PLUS14 = timezone(timedelta(hours=14))
MINUS12 = timezone(timedelta(hours=-12))
STHLM_WINTER = timezone(timedelta(hours=1))
# Thursday 26 March 2026, 09:00 UTC: the weekend after it has Europe's change to summer time.
T0 = datetime(2026, 3, 26, 9, 0, tzinfo=UTC)


def tp(data: c.TouchpointData, customer: str, at: datetime) -> Touchpoint:
    return new_touchpoint(data, customer_id=customer, occurred_at=at, source="t")


def inquiry(
    customer: str, case: str, at: datetime, channel: str = "email", team: str | None = None
) -> Touchpoint:
    return tp(c.InquiryReceived(case_id=case, channel=channel, team=team), customer, at)  # type: ignore[arg-type]


def reply(
    customer: str, case: str, at: datetime, channel: str = "email", team: str = "sthlm"
) -> Touchpoint:
    return tp(
        c.ReplySent(case_id=case, channel=channel, agent="a", team=team, country="SE"),  # type: ignore[arg-type]
        customer,
        at,
    )


def promise(customer: str, pid: str, at: datetime, due: datetime) -> Touchpoint:
    return tp(
        c.PromiseMade(promise_id=pid, what="call back", made_by="a", due_by=due), customer, at
    )


class RowCount:
    """Rows the store's database returns to its reads, while installed."""

    def __init__(self, store: JourneyStore) -> None:
        self.rows = 0
        backend: Any = store.backend
        query, queries = backend.query, backend.queries

        def counted_query(sql: str, params: Any = ()) -> Any:
            out = query(sql, params)
            self.rows += len(out)
            return out

        def counted_queries(statements: Any) -> Any:
            out = queries(statements)
            self.rows += sum(len(r) for r in out)
            return out

        backend.query, backend.queries = counted_query, counted_queries


def rows_of_a_tick(pipeline: Pipeline) -> int:
    counter = RowCount(pipeline.store)
    assert pipeline.keeper.tick() == []
    return counter.rows


def every_partition(pipeline: Pipeline) -> list[Touchpoint]:
    """A touchpoint without a clock on each partition: every partition then has a position
    and an event clock, whatever the clocks the test adds."""
    out: dict[int, Touchpoint] = {}
    n = 0
    while len(out) < 6:
        cid = f"filler-{n}"
        n += 1
        part = pipeline.log.partition_for(TOPIC, cid.encode())
        if part not in out:
            out[part] = tp(c.IdentityLinked(kind="email", value=f"{cid}@x.test"), cid, T0)
    return list(out.values())


@contextmanager
def pipeline_on(
    tmp_path: Path, store: StoreAddress, name: str, now: datetime
) -> Iterator[tuple[Pipeline, ManualClock]]:
    log = EmbeddedLog(str(tmp_path / f"{name}.log.db"))
    clock = ManualClock(now)
    pipeline = Pipeline(log, store, topic=TOPIC, rules=RULES, clock=clock)
    try:
        yield pipeline, clock
    finally:
        pipeline.close()
        log.close()


def test_a_tick_with_nothing_due_reads_no_more_with_many_clocks_open(
    tmp_path: Path, store_address: StoreAddress
) -> None:
    now = T0 + timedelta(minutes=10)
    with pipeline_on(tmp_path, store_address, "few", now) as (pipeline, _):
        pipeline.emit(every_partition(pipeline), logged_at=now)
        # Business-hours first replies of 8 open hours, a week away from due at the most.
        pipeline.emit([inquiry(f"c-{i}", "k", T0, team="sthlm") for i in range(5)], logged_at=now)
        pipeline.catch_up()
        pipeline.keeper.tick()
        few = rows_of_a_tick(pipeline)
        pipeline.emit(
            [
                inquiry(f"c-{i}", "k", T0, team=("sthlm", "kiri", "baker")[i % 3])
                for i in range(5, 80)
            ],
            logged_at=now,
        )
        pipeline.catch_up()
        pipeline.keeper.tick()
        many = rows_of_a_tick(pipeline)
        assert pipeline.service_levels().breached == []
        assert len(pipeline.service_levels().unanswered) == 80
    assert many == few, f"a tick read {few} rows with 5 clocks open, {many} with 80"


def test_recorded_breaches_are_not_read_again(tmp_path: Path, store_address: StoreAddress) -> None:
    now = T0 + timedelta(minutes=10)
    with pipeline_on(tmp_path, store_address, "recorded", now) as (pipeline, clock):
        pipeline.emit(every_partition(pipeline), logged_at=now)

        def break_promises(first: int, count: int) -> None:
            at = clock.now
            pipeline.emit(
                [
                    promise(f"p-{i}", "cb", at, at + timedelta(hours=1))
                    for i in range(first, first + count)
                ],
                logged_at=at,
            )
            pipeline.catch_up()
            clock.set(at + timedelta(hours=2))
            pipeline.catch_up()
            clock.set(clock.now + timedelta(seconds=31))  # every partition idle: the wall clock
            pipeline.catch_up()

        break_promises(0, 2)
        few = rows_of_a_tick(pipeline)
        break_promises(2, 40)
        many = rows_of_a_tick(pipeline)
        # Recorded, and still listed as missed (nobody acknowledged them).
        breached = pipeline.service_levels().breached
        assert len(breached) == 42 and all(i.recorded for i in breached)
    assert many == few, f"a tick read {few} rows with 2 breaches recorded, {many} with 42"


# ---------------------------------------------------------------------------- decisions


def scenario() -> list[tuple[datetime, Touchpoint]]:
    """(arrival, touchpoint): reply clocks in business hours in four calendars, at offsets
    from +14:00 to -12:00, across Stockholm's change to summer time; some answered in time,
    some late (a reply folded after the deadline), some never; promises due at times whose
    ISO text order is not their time order; one late report of a reply."""
    h = timedelta(hours=1)
    m = timedelta(minutes=1)
    out: list[tuple[datetime, Touchpoint]] = []

    def at(when: datetime, t: Touchpoint) -> None:
        out.append((when, t))

    # Kiritimati (+14:00): Friday 27th 16:30 local = Friday 02:30 UTC; 8 open hours run to
    # Monday 15:30 local.
    k0 = datetime(2026, 3, 27, 16, 30, tzinfo=PLUS14)
    at(k0, inquiry("kiri-1", "a", k0, team="kiri"))
    at(k0 + 5 * m, inquiry("kiri-2", "b", k0 + 5 * m, team="kiri"))
    at(k0 + 10 * h, reply("kiri-2", "b", k0 + 10 * h, team="kiri"))  # in time (closed hours)
    # Baker (-12:00): split hours; one answered an hour late, the late reply reported late.
    b0 = datetime(2026, 3, 26, 11, 0, tzinfo=MINUS12)
    at(b0, inquiry("baker-1", "a", b0, team="baker"))
    late = RULES.deadline("first_reply", "email", "baker", b0)[1] + h
    at(late + 3 * h, reply("baker-1", "a", late, team="baker"))  # arrives 3 h after it happened
    at(b0 + 2 * m, inquiry("baker-2", "b", b0 + 2 * m, channel="chat", team="baker"))
    # Stockholm: Friday afternoon before the change to summer time, due on Monday (+02:00).
    s0 = datetime(2026, 3, 27, 15, 0, tzinfo=STHLM_WINTER)
    at(s0, inquiry("sthlm-1", "a", s0, team="sthlm"))
    at(s0 + h, inquiry("sthlm-2", "b", s0 + h, channel="phone", team="sthlm"))
    at(s0 + 2 * h, reply("sthlm-2", "b", s0 + 2 * h, channel="phone"))  # in time
    # A next reply in business hours: the customer writes again after an answer.
    at(s0 + 3 * h, inquiry("sthlm-3", "c", s0 + 3 * h, team="sthlm"))
    at(s0 + 4 * h, reply("sthlm-3", "c", s0 + 4 * h))
    at(s0 + 5 * h, inquiry("sthlm-3", "c", s0 + 5 * h, team="sthlm"))
    # Open right across the missing hour of Sunday the 29th (UTC 01:00 -> local 03:00).
    n0 = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)
    at(n0, inquiry("night-1", "a", n0, channel="letter", team="night"))
    at(n0 + 3 * m, inquiry("night-2", "b", n0 + 3 * m, channel="phone", team="night"))
    # Around the clock (no calendar: no team).
    at(T0, inquiry("plain-1", "a", T0, channel="chat"))
    at(T0 + 20 * m, reply("plain-1", "a", T0 + 20 * m, channel="chat"))  # 5 minutes late
    # Promises: +14:00 due the "day before" -12:00 in text, but later in time; one kept.
    made = T0 + 2 * h
    at(made, promise("prom-1", "east", made, datetime(2026, 3, 28, 10, 0, tzinfo=PLUS14)))
    at(made, promise("prom-1", "west", made, datetime(2026, 3, 27, 10, 0, tzinfo=MINUS12)))
    at(made, promise("prom-2", "kept", made, datetime(2026, 3, 27, 12, 0, tzinfo=MINUS12)))
    kept_at = datetime(2026, 3, 27, 11, 0, tzinfo=MINUS12)
    at(kept_at, tp(c.PromiseKept(promise_id="kept", kept_by="a"), "prom-2", kept_at))
    return out


END = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)


def play(pipeline: Pipeline, clock: ManualClock, step: timedelta) -> None:
    """Arrivals in order, the clock moving in ``step``s, the runner and keeper catching up
    at each step (and at each arrival); then the end, idle."""
    events = sorted(scenario(), key=lambda p: p[0])
    t = T0 - timedelta(hours=1)
    i = 0
    while t < END:
        t = min(t + step, END)
        clock.set(t)
        while i < len(events) and events[i][0] <= t:
            pipeline.emit([events[i][1]], logged_at=events[i][0])
            i += 1
        pipeline.catch_up()
    pipeline.settle(END + timedelta(hours=1), clock)


def decided(log: EmbeddedLog) -> list[tuple[str, str, str, str, str, str]]:
    consumer = log.consumer(f"count-{id(log)}", [TOPIC])
    out = []
    try:
        while batch := consumer.poll(0.05, 1000):
            for m in batch:
                t = decode(m.value)
                if isinstance(t.data, c.PromiseBroken):
                    ref, due = t.data.promise_id, t.data.due_by
                elif isinstance(t.data, c.ReplyOverdue):
                    ref, due = t.data.case_id, t.data.due_by
                else:
                    continue
                out.append(
                    (
                        t.type,
                        t.customer_id,
                        ref,
                        due.isoformat(),
                        t.occurred_at.isoformat(),
                        str(t.event_id),
                    )
                )
    finally:
        consumer.close()
    return sorted(out)


def expected() -> set[tuple[str, str, str, datetime]]:
    """Every breach of the scenario, its deadline from the rules alone."""
    d = RULES.deadline
    e = "first_reply"
    b0 = datetime(2026, 3, 26, 11, 0, tzinfo=MINUS12)
    k0 = datetime(2026, 3, 27, 16, 30, tzinfo=PLUS14)
    s0 = datetime(2026, 3, 27, 15, 0, tzinfo=STHLM_WINTER)
    n0 = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)
    m, h = timedelta(minutes=1), timedelta(hours=1)
    return {
        ("ReplyOverdue", "kiri-1", "a", d(e, "email", "kiri", k0)[1]),
        ("ReplyOverdue", "baker-1", "a", d(e, "email", "baker", b0)[1]),
        ("ReplyOverdue", "baker-2", "b", d(e, "chat", "baker", b0 + 2 * m)[1]),
        ("ReplyOverdue", "sthlm-1", "a", d(e, "email", "sthlm", s0)[1]),
        ("ReplyOverdue", "sthlm-3", "c", d("next_reply", "email", "sthlm", s0 + 5 * h)[1]),
        ("ReplyOverdue", "night-1", "a", d(e, "letter", "night", n0)[1]),
        ("ReplyOverdue", "night-2", "b", d(e, "phone", "night", n0 + 3 * m)[1]),
        ("ReplyOverdue", "plain-1", "a", d(e, "chat", None, T0)[1]),
        ("PromiseBroken", "prom-1", "east", datetime(2026, 3, 28, 10, 0, tzinfo=PLUS14)),
        ("PromiseBroken", "prom-1", "west", datetime(2026, 3, 27, 10, 0, tzinfo=MINUS12)),
    }


def test_the_same_breaches_at_the_same_event_times_live_and_replayed(
    tmp_path: Path, new_store: Callable[[str], StoreAddress]
) -> None:
    live_store = new_store("live")
    with pipeline_on(tmp_path, live_store, "live", T0) as (pipeline, clock):
        play(pipeline, clock, timedelta(minutes=30))
        live = decided(pipeline.log)  # type: ignore[arg-type]
        log = pipeline.log
        # A rebuild of the live log, then the keeper on it: nothing to decide again.
        rebuild(log, live_store, topic=TOPIC, dlq_topic=f"{TOPIC}.dlq")
    with pipeline_on(tmp_path, live_store, "live", END + timedelta(days=1)) as (again, clock):
        again.runner.step()  # joins: the keeper decides for the partitions its runner holds
        assert len(again.runner.owned_partitions()) == 6
        again.catch_up()
        clock.set(clock.now + timedelta(seconds=31))
        again.catch_up()
        assert decided(again.log) == live  # type: ignore[arg-type]
    with pipeline_on(tmp_path, new_store("replay"), "replay", T0) as (replay, clock):
        play(replay, clock, timedelta(days=1))  # another pace: a day at a time
        replayed = decided(replay.log)  # type: ignore[arg-type]
    # Each decided once, at its deadline (the fact occurred then), the same ids both ways.
    assert len({r[5] for r in live}) == len(live)
    assert all(r[3] == r[4] for r in live)
    assert replayed == live
    assert {
        (t, cid, ref, datetime.fromisoformat(due)) for t, cid, ref, due, _, _ in live
    } == expected()


def test_a_keeper_with_other_rules_works_every_deadline_out_again(
    tmp_path: Path, store_address: StoreAddress
) -> None:
    """The stored deadlines are the keeper's rules' own: a keeper started with other rules
    decides by those, not by what an earlier keeper worked out."""
    now = T0 + timedelta(minutes=10)
    log = EmbeddedLog(str(tmp_path / "rules.log.db"))
    first = Pipeline(log, store_address, topic=TOPIC, rules=RULES, clock=ManualClock(now))
    first.emit([inquiry("c-1", "k", T0, team="sthlm")], logged_at=now)
    first.catch_up()
    first.keeper.tick()  # 8 open hours in Stockholm: due on Thursday evening at the earliest
    first.close()
    quick = ServiceRules(first_reply_hours={"default": 1, "email": 1})  # around the clock
    clock = ManualClock(T0 + timedelta(hours=2))
    second = Pipeline(log, store_address, topic=TOPIC, rules=quick, clock=clock)
    try:
        second.runner.step()  # joins: the keeper decides for the partitions its runner holds
        second.catch_up()
        clock.set(clock.now + timedelta(seconds=31))  # idle: the wall clock decides
        second.catch_up()
        assert [
            (t, cid, ref, datetime.fromisoformat(due)) for t, cid, ref, due, _, _ in decided(log)
        ] == [("ReplyOverdue", "c-1", "k", T0 + timedelta(hours=1))]
    finally:
        second.close()
        log.close()
