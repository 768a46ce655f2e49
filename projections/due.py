"""What falls due: the promise keeper's question, asked of the database exactly.

Each running clock (``clocks``) and each reply clock that stopped without a recorded breach
(``stopped_clocks``) carries ``due_us``, its deadline by the keeper's rules in microseconds
since the epoch (UTC, so integer order is time order whatever offset the times came in):

* a live store's fold writes ``PENDING`` whenever it writes the row (a new clock, or one
  whose start, channel, team or promised time changed): the keeper has yet to work the
  deadline out; a rebuilding store's fold writes NULL, and the first keeper on the store
  (it holds no fingerprint of the keeper's rules yet) works out every row in one pass;
* the keeper works each deadline out once (``ServiceRules.deadline``: business hours and
  all) and stores it; a stopped clock that stopped in time gets NULL (nothing will ever
  fall due);
* once the breach is on the log (``breaches`` holds it, under exactly the deadline the
  keeper would decide), the keeper sets NULL: the clock stays listed for the agents, but
  the keeper never reads it again.

NULL rows are outside the partial index on ``due_us``, so a tick reads the clocks due by
its clock and the ones still pending, never the open ones that are not due (a busy customer
base costs each tick nothing) nor breaches already recorded. A watermark goes further: when
nothing was folded since the last look (the store's positions are the same) and the next
deadline lies beyond the clock, the tick reads nothing at all.

The deadlines depend on the rules, so the rules' fingerprint is kept with the store
(``journey_store_meta``): a keeper with other rules works every row out anew in one pass
(no rebuild: rules are still applied by the reader, here the keeper), and writes its
fingerprint when the pass is done.

Nothing decides differently: the rows read are then judged as before, on times parsed from
their own text (the fact's deadline keeps the offset it always had, and with it its id).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import structlog

from domain.positions import TopicPartition
from domain.rules import ServiceRules
from projections.facts import at_micros
from projections.rows import PENDING
from projections.service_levels import ServiceItem, running_deadline
from projections.store import JourneyStore

__all__ = ["PENDING", "Due", "DueClocks", "rules_fingerprint"]

logger = structlog.get_logger(__name__)

# Rows worked out per transaction (a rebuilt store's clocks are all pending at first).
_CHUNK = 2000
_META_KEY = "deadline_rules"


def rules_fingerprint(rules: ServiceRules) -> str:
    return hashlib.sha256(rules.model_dump_json().encode()).hexdigest()[:32]


class _Mine:
    """The SQL that keeps a read to the customers of some partitions (all: none)."""

    def __init__(self, partitions: Collection[int] | None) -> None:
        self.join = self.where = ""
        self.params: tuple[int, ...] = ()
        if partitions is not None:
            self.params = tuple(sorted(partitions)) or (-1,)
            self.join = " JOIN customers c USING (customer_id)"
            self.where = f" AND c.partition IN ({','.join('?' * len(self.params))})"


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


class Due(NamedTuple):
    """A clock due, and the partition its customer's touchpoints were folded from (the one
    whose worker selects it, and whose clock and holding decide it)."""

    partition: int
    item: ServiceItem


class DueClocks:
    """The keeper's reads of what is due, for one store handle at a time."""

    def __init__(self, rules: ServiceRules) -> None:
        self.rules = rules
        self.fingerprint = rules_fingerprint(rules)
        self._store: JourneyStore | None = None
        # The positions at the last full look, and the earliest deadline then stored (None:
        # none): while both hold, a tick whose clock is before that deadline has nothing.
        self._seen: object = None
        self._next_due: int | None = None

    def due(
        self,
        store: JourneyStore,
        positions: Mapping[TopicPartition, int],
        until: datetime,
        partitions: Collection[int] | None = None,
    ) -> list[Due]:
        """Every clock whose deadline is at or before ``until`` and not yet on the log as a
        breach (a running clock past due, or a reply clock that stopped after its target),
        in a total order (customer, kind, ref): what the keeper used to find among every
        open clock, found by an indexed range. ``partitions``: only customers of these (the
        ones this worker's runner holds: with several workers, each works out and decides
        its own, and never updates rows another worker's batch is writing)."""
        if store is not self._store:
            self._store, self._seen, self._next_due = store, None, None
            self._check_rules(store)
        # What the last look saw: the positions (anything folded since changes them) and
        # the partitions looked after (one newly held may have rows nobody worked out).
        seen = (
            tuple(sorted(positions.items())),
            None if partitions is None else tuple(sorted(partitions)),
        )
        until_us = at_micros(until)
        if seen == self._seen and (self._next_due is None or until_us < self._next_due):
            return []
        mine = _Mine(partitions)
        self._work_out(store, mine)
        items = self._open_due(store, until_us, mine) + self._stopped_due(store, until_us, mine)
        self._seen = seen
        self._next_due = self._earliest(store)
        return items

    # ------------------------------------------------------------------ the rules

    def _check_rules(self, store: JourneyStore) -> None:
        """The stored deadlines are this keeper's rules' own, or all are worked out anew:
        a store no keeper has looked at (a rebuilt one writes no deadline at all), or one
        whose deadlines other rules gave. The fingerprint is written when the pass is done,
        so a pass cut short is made again."""
        rows = store.query("SELECT value FROM journey_store_meta WHERE key = ?", (_META_KEY,))
        if rows and str(rows[0][0]) == self.fingerprint:
            return
        if rows:
            logger.info(
                "service rules changed: working out every clock's deadline again",
                store=store.where,
            )
            store.backend.execute([("DELETE FROM journey_store_meta WHERE key = ?", (_META_KEY,))])
        self._work_out_all(store)
        store.backend.execute(
            [
                (
                    "INSERT INTO journey_store_meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (_META_KEY, self.fingerprint),
                )
            ]
        )

    # ------------------------------------------------------------------ working out

    def _deadline(
        self, kind: str, channel: str | None, team: str | None, started: str, due: str | None
    ) -> datetime:
        if due is not None:  # a promise: its own deadline
            return _parse(due)
        return self.rules.deadline(kind, channel or "default", team, _parse(started))[1]

    def _open_value(self, row: Sequence[Any]) -> int:
        _, kind, _, channel, team, started, due = row[:7]
        return at_micros(self._deadline(kind, channel, team, started, due))

    def _stopped_value(self, row: Sequence[Any]) -> int | None:
        _, kind, _, channel, team, started, end = row[:7]
        due_at = self._deadline(kind, channel, team, started, None)
        # Stopped by its deadline: nothing about it will ever fall due.
        return at_micros(due_at) if _parse(end) > due_at else None

    # The update of one row's due_us, holding only while the row still has the inputs it
    # was worked out from and the due_us it was read with: a row another writer changed
    # meanwhile is left as that writer wrote it (pending, for the next look).
    _SET_OPEN = (
        "UPDATE clocks SET due_us = ? WHERE customer_id = ? AND kind = ? AND ref = ?"
        " AND channel IS NOT DISTINCT FROM ? AND team IS NOT DISTINCT FROM ?"
        " AND started_at = ? AND due_at IS NOT DISTINCT FROM ? AND due_us IS NOT DISTINCT FROM ?"
    )
    _SET_STOPPED = (
        "UPDATE stopped_clocks SET due_us = ? WHERE customer_id = ? AND kind = ? AND ref = ?"
        " AND channel IS NOT DISTINCT FROM ? AND team IS NOT DISTINCT FROM ?"
        " AND started_at = ? AND stopped_at = ? AND due_us IS NOT DISTINCT FROM ?"
    )
    _OPEN_COLUMNS = "customer_id, kind, ref, channel, team, started_at, due_at, due_us"
    _STOPPED_COLUMNS = "customer_id, kind, ref, channel, team, started_at, stopped_at, due_us"

    def _work_out(self, store: JourneyStore, mine: _Mine) -> None:
        """Every pending row's deadline (through the index), stored, a chunk a
        transaction."""
        while True:
            rows = store.query(
                f"SELECT {self._OPEN_COLUMNS} FROM clocks{mine.join}"
                f" WHERE due_us = ?{mine.where} LIMIT ?",
                (PENDING, *mine.params, _CHUNK),
            )
            stopped = store.query(
                f"SELECT {self._STOPPED_COLUMNS} FROM stopped_clocks{mine.join}"
                f" WHERE due_us = ?{mine.where} LIMIT ?",
                (PENDING, *mine.params, _CHUNK),
            )
            writes: list[tuple[str, Sequence[Any]]] = [
                (self._SET_OPEN, (self._open_value(r), *r)) for r in rows
            ]
            writes += [(self._SET_STOPPED, (self._stopped_value(r), *r)) for r in stopped]
            if writes:
                store.backend.execute(writes)
            if len(rows) < _CHUNK and len(stopped) < _CHUNK:
                return

    def _work_out_all(self, store: JourneyStore) -> None:
        """Every row's deadline, whatever it holds (a pass over both tables in key order,
        a chunk a transaction; only the rows whose due_us changes are written)."""
        for table, columns, key, value, update in (
            ("clocks", self._OPEN_COLUMNS, 3, self._open_value, self._SET_OPEN),
            ("stopped_clocks", self._STOPPED_COLUMNS, 4, self._stopped_value, self._SET_STOPPED),
        ):
            order = ("customer_id", "kind", "ref", "started_at")[:key]
            after: tuple[Any, ...] | None = None
            while True:
                where = ""
                if after is not None:
                    where = f" WHERE ({', '.join(order)}) > ({', '.join('?' * key)})"
                rows = store.query(
                    f"SELECT {columns} FROM {table}{where} ORDER BY {', '.join(order)} LIMIT ?",
                    (*(after or ()), _CHUNK),
                )
                writes: list[tuple[str, Sequence[Any]]] = []
                for r in rows:
                    worked = value(r)
                    if worked != r[7]:
                        writes.append((update, (worked, *r)))
                if writes:
                    store.backend.execute(writes)
                if len(rows) < _CHUNK:
                    break
                last = rows[-1]
                after = (last[0], last[1], last[2], last[5])[:key]

    # ------------------------------------------------------------------ what is due

    def _open_due(self, store: JourneyStore, until_us: int, mine: _Mine) -> list[Due]:
        rows = store.query(
            "SELECT k.customer_id, k.kind, k.ref, k.case_kind, k.label, k.channel, k.team,"
            " k.country, k.started_at, k.due_at, k.due_us, c.erased_at, c.partition FROM clocks k"
            " JOIN customers c USING (customer_id)"
            f" WHERE k.due_us > ? AND k.due_us <= ?{mine.where}"
            " ORDER BY k.customer_id, k.kind, k.ref",
            (PENDING, until_us, *mine.params),
        )
        if not rows:
            return []
        recorded = self._recorded(store, [str(r[0]) for r in rows])
        items: list[Due] = []
        settled: list[tuple[str, Sequence[Any]]] = []
        rules = self.rules
        for row in rows:
            cid, kind, ref, case_kind, label, channel, team, country, started, due, due_us = row[
                :11
            ]
            erased, partition = row[11], int(row[12])
            start = _parse(started)
            warn_at, due_at = running_deadline(
                rules, kind, channel, team, started_at=start, due_at=due
            )
            if (cid, kind, ref, due_at.isoformat()) in recorded:
                # On the log: the row stays for the agents' lists, out of the keeper's sight.
                settled.append(
                    (
                        "UPDATE clocks SET due_us = NULL WHERE customer_id = ? AND kind = ?"
                        " AND ref = ? AND due_us = ? AND started_at = ?",
                        (cid, kind, ref, due_us, started),
                    )
                )
                continue
            item = ServiceItem.of_clock(
                (cid, kind, ref, case_kind, None if erased else label, channel, team, country),
                started_at=start,
                warn_at=warn_at,
                due_at=due_at,
                age_seconds=0.0,
            )
            items.append(Due(partition, item))
        if settled:
            store.backend.execute(settled)
        return items

    def _stopped_due(self, store: JourneyStore, until_us: int, mine: _Mine) -> list[Due]:
        rows = store.query(
            "SELECT customer_id, kind, ref, case_kind, channel, team, country, started_at,"
            " stopped_at, due_us, c.partition FROM stopped_clocks"
            " JOIN customers c USING (customer_id)"
            f" WHERE due_us > ? AND due_us <= ?{mine.where}"
            " ORDER BY customer_id, kind, ref, started_at",
            (PENDING, until_us, *mine.params),
        )
        if not rows:
            return []
        recorded = self._recorded(store, [str(r[0]) for r in rows])
        items: list[Due] = []
        settled: list[tuple[str, Sequence[Any]]] = []
        rules = self.rules
        for row in rows:
            cid, kind, ref, case_kind, channel, team, country, started, stopped, due_us = row[:10]
            partition = int(row[10])
            start, end = _parse(started), _parse(stopped)
            warn_at, due_at = rules.deadline(kind, channel or "default", team, start)
            if (cid, kind, ref, due_at.isoformat()) in recorded:
                settled.append(
                    (
                        "UPDATE stopped_clocks SET due_us = NULL WHERE customer_id = ?"
                        " AND kind = ? AND ref = ? AND started_at = ? AND due_us = ?",
                        (cid, kind, ref, started, due_us),
                    )
                )
                continue
            item = ServiceItem.of_clock(
                (cid, kind, ref, case_kind, None, channel, team, country),
                started_at=start,
                warn_at=warn_at,
                due_at=due_at,
                age_seconds=(end - start).total_seconds(),
            )
            items.append(Due(partition, item))
        if settled:
            store.backend.execute(settled)
        return items

    @staticmethod
    def _recorded(store: JourneyStore, customers: list[str]) -> set[tuple[str, str, str, str]]:
        """The breaches on record of these customers (by key: only theirs are read)."""
        out: set[tuple[str, str, str, str]] = set()
        unique = sorted(set(customers))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            out.update(
                (str(r[0]), str(r[1]), str(r[2]), str(r[3]))
                for r in store.query(
                    "SELECT customer_id, kind, ref, due_at FROM breaches"
                    f" WHERE customer_id IN ({marks})",
                    chunk,
                )
            )
        return out

    @staticmethod
    def _earliest(store: JourneyStore) -> int | None:
        """The earliest deadline stored (the watermark), None when there is none."""
        (a,), (b,) = (
            rows[0]
            for rows in store.backend.queries(
                [
                    (f"SELECT MIN(due_us) FROM {table} WHERE due_us > ?", (PENDING,))
                    for table in ("clocks", "stopped_clocks")
                ]
            )
        )
        found = [int(v) for v in (a, b) if v is not None]
        return min(found) if found else None
