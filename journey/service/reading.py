"""How the service reads the projection store: its own handle, following blue-green swaps,
with a cache of folded customers.

A customer is read as its stored snapshot plus the few touchpoints folded since (see
projections.store). The service never changes what it reads, so it keeps what it read,
keyed by the customer's (generation, touchpoints) as committed, and reads again only when
the customers row (written in the same transaction) shows another state. A cached journey
is never changed, so request threads may share it.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator

import structlog

from consumers.log import TopicPartition
from domain.aggregates import CustomerJourney
from projections.store import JourneyStore, StoreAddress, active_store, describe

__all__ = ["ReadStore", "StoreReader"]

logger = structlog.get_logger(__name__)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Loading a large customer makes tens of thousands of objects, none of them garbage:
    the collector's passes meanwhile walked the whole heap again and again (a cold read of
    a 10,000-touchpoint customer took 2-10x longer with them, measured under load)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# A customer loaded with at least this many touchpoints is handed to the collector's
# permanent generation (``gc.freeze``) as soon as it is loaded: its tens of thousands of
# objects are never garbage while cached (an evicted one is freed by its reference count,
# frozen or not), yet the collector's first passes after a load walked them all, and the
# heap of imports with them (~10 ms of a 10,000-touchpoint customer's first read).
FREEZE_FROM = 1000
# A freeze also keeps whatever cyclic garbage happens to exist at that moment: after this
# many freezes the permanent generation goes back to the collector (``gc.unfreeze``), so
# such garbage is reclaimed by its next full pass and stays bounded.
UNFREEZE_EVERY = 64


class _Freezer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.freezes = 0

    def loaded(self, touchpoints: int) -> None:
        """A customer was loaded (the collector paused): freeze what the load made."""
        if touchpoints < FREEZE_FROM:
            return
        with self.lock:
            self.freezes += 1
            if self.freezes % UNFREEZE_EVERY == 0:
                gc.unfreeze()
            else:
                gc.freeze()


_freezer = _Freezer()


class ReadStore(JourneyStore):
    """A :class:`JourneyStore` for readers only: journeys come from a snapshot cache."""

    def __init__(self, path: StoreAddress, *, snapshots: int = 2000) -> None:
        super().__init__(path, reading=True)
        self._snapshots: OrderedDict[str, CustomerJourney] = OrderedDict()
        self._snapshots_size = snapshots
        self._snapshots_lock = threading.Lock()

    def journey(self, customer_id: str) -> CustomerJourney | None:
        rows = self.query(
            "SELECT generation, touchpoints FROM customers WHERE customer_id = ?", (customer_id,)
        )
        if not rows:
            return None
        generation, touchpoints = int(rows[0][0]), int(rows[0][1])
        with self._snapshots_lock:
            cached = self._snapshots.get(customer_id)
            if cached is not None and (cached.generation, cached.touchpoints) == (
                generation,
                touchpoints,
            ):
                self._snapshots.move_to_end(customer_id)
                return cached
        # Its snapshot and the few touchpoints since: a copy of our own, never changed.
        with _collector_paused():
            agg = self._load(customer_id, generation)
            _freezer.loaded(agg.touchpoints)
        with self._snapshots_lock:
            current = self._snapshots.get(customer_id)
            if current is None or current.touchpoints <= agg.touchpoints:
                self._snapshots[customer_id] = agg
                self._snapshots.move_to_end(customer_id)
            while len(self._snapshots) > self._snapshots_size:
                self._snapshots.popitem(last=False)
        return agg


class StoreReader:
    """The service's read handle on the projection store; follows blue-green swaps.

    A store of its own (not the runner's): reads never contend with the writer's cache, and
    the same code serves ``--no-runner``, where another process writes the store.
    """

    _CHECK_EVERY_S = 0.05

    def __init__(self, base: StoreAddress) -> None:
        self.base = base
        self._lock = threading.Lock()
        self._file = active_store(base)
        self._store = ReadStore(self._file)
        self._retired: list[ReadStore] = []
        self._checked = time.monotonic()

    @property
    def path(self) -> StoreAddress:
        return self._file

    def get(self) -> ReadStore:
        now = time.monotonic()
        if now - self._checked < self._CHECK_EVERY_S:
            return self._store
        with self._lock:
            self._checked = now
            active = active_store(self.base)
            if active != self._file:
                logger.info("store swapped", old=describe(self._file), new=describe(active))
                # Requests in flight may still read the old file: closed at shutdown.
                self._retired.append(self._store)
                self._store = ReadStore(active)
                self._file = active
            return self._store

    def positions(self) -> dict[TopicPartition, int]:
        return self.get().positions()

    def close(self) -> None:
        with self._lock:
            for store in [*self._retired, self._store]:
                store.close()
            self._retired = []
