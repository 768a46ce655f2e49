"""Blue-green rebuild: replay the log from the beginning into a fresh store, then swap.

Queries and the live runner keep using the active store meanwhile. The new store is filled
by an ordinary :class:`Runner` reading every partition outside any consumer group (it
never makes the broker rebalance the engine's group; it starts at offset 0); once
it has caught up with the log it becomes active with one atomic rename of the pointer file,
and live runners follow at their next batch.

With ``processes`` above one the partitions are folded by that many processes, this one
and the others forked, each a runner of its own share (every customer's touchpoints are in
one partition: the key is the customer id), all writing the one new store as several live
workers do: on PostgreSQL side by side, on SQLite taking turns for each write transaction
(:class:`~projections.backends.WriterTurns`). What one customer's facts say of another
(links, an erasure's cascade, defects) is what workers sharing a store see; docs/
BENCHMARKS.md ("A rebuild on several processes") says why one file and not shards merged
at the end. Each process retries a transient failure from the store's positions as a
single runner does; one that fails for good or is killed fails the whole rebuild (the
others are stopped) and nothing is swapped in: a rebuilding store defers the rows of the
customers a process holds until they leave its cache, so a share cannot resume in a new
process.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import structlog

from consumers.log import Log
from consumers.runner import Runner, RunnerStats
from domain.bounds import DEFAULT_MAX_FUTURE
from domain.errors import JourneyError
from projections.keys import CustomerKeys
from projections.location import is_postgres
from projections.store import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_CACHE_WEIGHT,
    JourneyStore,
    StoreAddress,
    describe,
    rebuild_target,
    swap_store,
)

__all__ = ["RebuildFailed", "RebuildStats", "default_processes", "rebuild"]

logger = structlog.get_logger(__name__)

# Per share, in shared memory: processed, duplicates, dead letters, keyless, and on SQLite
# the write transactions that waited for another process's turn and how long (µs).
_SLOTS = 6
# What one more rebuild process holds of its own, in cache weight (0.43 KB a unit, as the
# folded state it displaces): a 1M rebuild on two processes with the weight split evenly
# peaked at 330 MiB (PSS) against 282 for one. 130,000 (two processes: 85,000 each): their
# PSS summed peaked at 277.8 MiB at 1M under load, 100,000 each at 291.5, and a quiet
# machine adds ~5-13 MiB (fewer processes share the interpreter's pages); the heavy
# customers' read-backs it makes cost no CPU measured (docs/BENCHMARKS.md).
_PROCESS_WEIGHT = 130_000
# Only to measure the alternative (docs/BENCHMARKS.md): "0" leaves several SQLite writers
# to SQLite's own lock and Python's busy handler instead of taking turns.
_TURNS = os.environ.get("JOURNEY_REBUILD_WRITER_TURNS", "1") != "0"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Processes of a rebuild when none are asked for (and the cores allow).
_DEFAULT_PROCESSES = 2


class RebuildFailed(JourneyError):
    """A process of a rebuild on several failed: the rebuild stopped, and the store in use
    stays as it was."""


@dataclass
class RebuildStats(RunnerStats):
    """A rebuild's counts over all its processes, and which process folded which
    partitions (pid -> partitions), and how often and how long a SQLite write waited for
    another process's."""

    shares: dict[int, tuple[int, ...]] = field(default_factory=dict)
    write_waits: int = 0
    write_waited_s: float = 0.0


@dataclass(frozen=True)
class _Job:
    log: Log
    base: StoreAddress
    new_file: StoreAddress
    topic: str
    dlq_topic: str
    batch_size: int
    max_future: timedelta
    retry_for_s: float
    shares: list[tuple[int, ...]]
    # The writer's cache bounds (the settings' JOURNEY_CACHE_SIZE / _WEIGHT), split among
    # the processes of a rebuild on several.
    cache_size: int
    cache_weight: int


def default_processes(partitions: int) -> int:
    """Two where this process may run on two cores or more, at most one per partition. Not
    one per core: the processes share one cache budget (each beyond the first costs ~45 MiB
    of its own), and on SQLite one writer. Two rebuilt 1M touchpoints within one process's
    memory, 1.66-1.69x faster than one on a quiet machine in session 15 but 1.04x in
    session 16's one near-quiet pair (docs/BENCHMARKS.md, "Two rebuild processes by
    default")."""
    return max(1, min(_DEFAULT_PROCESSES, len(os.sched_getaffinity(0)), partitions))


def rebuild(
    log: Log,
    base: StoreAddress,
    *,
    topic: str,
    dlq_topic: str,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 2000,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
    retry_for_s: float = 300.0,
    processes: int | None = 1,
    cache_size: int | None = None,
    cache_weight: int | None = None,
) -> tuple[StoreAddress, RebuildStats, float]:
    """Returns (new store file, stats, seconds).

    A failure of the new store or the broker is retried from the last recorded position for
    ``retry_for_s``; after that the rebuild fails and the active store stays as it was
    (nothing is swapped in unless every message was folded or dead-lettered).

    ``processes``: how many processes fold the partitions (None: :func:`default_processes`,
    one with a log that cannot be opened again in a forked process; never more than the
    topic has partitions); 1 folds them all in this one, and with more this one folds the
    first share beside the forked ones.
    ``cache_size`` / ``cache_weight``: the writer's cache bounds (JourneyStore's defaults
    when None), split evenly among the processes."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    new_file = rebuild_target(base, stamp)
    partitions = _partitions(log, topic)
    sizes = log.high_watermarks(topic) if partitions else {}
    total = sum(sizes.values())
    if processes is None:
        # The default, where the log can be opened again in a forked process (both of ours).
        reopens = getattr(log, "reopened", None) is not None
        count = default_processes(len(partitions)) if reopens else 1
    else:
        count = processes
    count = max(1, min(count, len(partitions)))
    job = _Job(
        log=log,
        base=base,
        new_file=new_file,
        topic=topic,
        dlq_topic=dlq_topic,
        batch_size=batch_size,
        max_future=max_future,
        retry_for_s=retry_for_s,
        shares=balanced_shares(partitions, sizes, count),
        cache_size=DEFAULT_CACHE_SIZE if cache_size is None else cache_size,
        cache_weight=DEFAULT_CACHE_WEIGHT if cache_weight is None else cache_weight,
    )
    started = time.monotonic()
    try:
        if count == 1:
            stats = _rebuild_here(job, progress, total)
            stats.shares = {os.getpid(): tuple(partitions)}
        else:
            stats = _rebuild_in_processes(job, progress, total)
    except BaseException:
        # Never swapped in, never opened again (a new rebuild starts a new file): what it
        # wrote, as big as a store, would stay on the disk for good.
        _remove_failed(new_file)
        raise
    seconds = time.monotonic() - started
    swap_store(base, new_file)
    logger.info(
        "rebuild swapped in",
        store=describe(new_file),
        events=stats.processed,
        processes=count,
        seconds=round(seconds, 3),
        events_per_second=round(stats.processed / seconds, 1) if seconds else None,
    )
    return new_file, stats, seconds


def _rebuild_here(
    job: _Job, progress: Callable[[int, int], None] | None, total: int
) -> RebuildStats:
    def on_batch(stats: RunnerStats) -> None:
        if progress is not None:
            progress(stats.processed, total)

    # The keys stay where they are (beside the base, never swapped): the new store's fold
    # opens personal values with the same keys, and an erasure's keys stay deleted.
    keys = CustomerKeys(job.base)
    runner = Runner(
        job.log,
        job.new_file,
        keys=keys,
        topic=job.topic,
        dlq_topic=job.dlq_topic,
        group=None,  # assigned partitions: reading never disturbs a running engine
        batch_size=job.batch_size,
        follow_swaps=False,
        on_batch=on_batch,
        produce_dead_letters=False,
        max_future=job.max_future,
        rebuilding=True,
        cache_size=job.cache_size,
        cache_weight=job.cache_weight,
    )
    try:
        stats = runner.run_until_caught_up(timeout_s=24 * 3600, retry_for_s=job.retry_for_s)
        # Catch up with what arrived during the replay, then swap.
        stats = runner.run_until_caught_up(timeout_s=600, retry_for_s=job.retry_for_s)
        # Every customer still in the writer's cache gets its deferred rows and the
        # snapshot it is due before anyone reads the store.
        runner.store.complete()
        _compact(runner.store)
    finally:
        runner.close()
        keys.close()
    return RebuildStats(
        batches=stats.batches,
        applied=stats.applied,
        duplicates=stats.duplicates,
        dead_letters=stats.dead_letters,
        keyless=stats.keyless,
    )


def _compact(store: JourneyStore) -> None:
    # Nobody reads the new store yet: pack it (SQLite: no free pages, but the b-trees
    # filled at random places are 86-90 % full: 3-4 % fewer bytes and a disk-cold first
    # view 10-30 % quicker, for ~1 CPU s at 1M; PostgreSQL 12 % for 5 s at 100k;
    # docs/BENCHMARKS.md).
    packing = time.monotonic()
    store.compact()
    logger.info("rebuilt store compacted", seconds=round(time.monotonic() - packing, 3))


# ---------------------------------------------------------------------------- processes


class _ShareFailed(BaseException):
    """A forked process failed while this one folded its own share: a BaseException, so
    that the runner's retries (of every Exception) let it through."""

    def __init__(self, failed: RebuildFailed) -> None:
        super().__init__(str(failed))
        self.failed = failed


def _rebuild_in_processes(
    job: _Job, progress: Callable[[int, int], None] | None, total: int
) -> RebuildStats:
    # The tables are made once, here, before any process opens the store.
    JourneyStore(job.new_file, rebuilding=True).close()
    # fork: the processes share this one's imported code (copy-on-write) and start at once.
    # This process folds the first share itself: idle, it held ~27-38 MiB (PSS) of a 1M
    # rebuild's peak for nothing (docs/BENCHMARKS.md, "Two rebuild processes by default").
    ctx = multiprocessing.get_context("fork")
    counters: Any = ctx.Array("q", len(job.shares) * _SLOTS, lock=False)
    errors: Any = ctx.SimpleQueue()
    procs: dict[int, BaseProcess] = {}
    failures: list[str] = []

    def start(index: int) -> None:
        proc = ctx.Process(
            target=_fold_share,
            args=(job, index, counters, errors, os.getpid()),
            name=f"rebuild-{index}",
            daemon=True,  # never outlives the rebuild that started it
        )
        proc.start()
        procs[index] = proc
        logger.info(
            "rebuild process started",
            rebuild_process=index,
            pid=proc.pid,
            partitions=list(job.shares[index]),
        )

    def processed() -> int:
        return sum(counters[i * _SLOTS] for i in range(len(job.shares)))

    def failed(index: int, why: str) -> RebuildFailed:
        return RebuildFailed(
            f"rebuild process {index} (partitions "
            f"{', '.join(map(str, job.shares[index]))}) failed: {why}; the store in "
            "use is unchanged: fix the cause and run the rebuild again"
        )

    done: set[int] = set()

    def look() -> None:
        """Raises when a forked process failed or was killed."""
        for index, proc in procs.items():
            if index in done or proc.exitcode is None:
                continue
            proc.join()
            if proc.exitcode == 0:
                done.add(index)
                continue
            # Failed, or killed: the customers it held in memory were never written
            # whole (a rebuilding store defers their rows to the end), so its share
            # cannot resume from the store's positions. The rebuild stops.
            while not errors.empty():
                failures.append(errors.get())
            raise failed(
                index,
                "; ".join(failures)
                or (
                    f"killed by signal {-proc.exitcode}"
                    if proc.exitcode < 0
                    else f"exit code {proc.exitcode}"
                ),
            )

    def on_own_batch() -> None:
        if progress is not None:
            progress(processed(), total)
        try:
            look()
        except RebuildFailed as exc:
            raise _ShareFailed(exc) from None

    try:
        for index in range(1, len(job.shares)):
            start(index)
        try:
            _fold_here(job, counters, on_own_batch)
        except _ShareFailed as exc:
            raise exc.failed from None
        except Exception as exc:
            raise failed(0, f"{type(exc).__name__}: {exc}") from exc
        done.add(0)
        while len(done) < len(job.shares):
            time.sleep(0.2)
            if progress is not None:
                progress(processed(), total)
            look()
        if progress is not None:
            progress(processed(), total)
    finally:
        for proc in procs.values():
            if proc.exitcode is None:
                proc.terminate()
        for proc in procs.values():
            proc.join(10)
            if proc.exitcode is None:
                proc.kill()
                proc.join()
    # Opened as the processes opened it (a rollback journal, no search triggers: see
    # SQLiteBackend): the search index is built once, here, from the whole table, instead
    # of row by row in each process; then packed, made WAL and durable.
    store = JourneyStore(job.new_file, rebuilding=True, shared_writes=not is_postgres(job.new_file))
    try:
        indexing = time.monotonic()
        store.backend.index_search()
        logger.info(
            "rebuilt store's search index built", seconds=round(time.monotonic() - indexing, 3)
        )
        _compact(store)
    finally:
        store.close()
        _remove_turns_file(job.new_file)
    slot = [sum(counters[i * _SLOTS + k] for i in range(len(job.shares))) for k in range(_SLOTS)]
    return RebuildStats(
        applied=slot[0] - slot[1] - slot[2],
        duplicates=slot[1],
        dead_letters=slot[2],
        keyless=slot[3],
        write_waits=slot[4],
        write_waited_s=slot[5] / 1e6,
        shares={
            (os.getpid() if i == 0 else int(procs[i].pid or 0)): share
            for i, share in enumerate(job.shares)
        },
    )


def _fold_here(job: _Job, counters: Any, on_batch: Callable[[], None]) -> None:
    """The first share, folded by the rebuild's own process beside the forked ones (with
    its own log, not a reopened one); ``on_batch`` after each of its batches (progress,
    and a look at the other processes)."""
    share = job.shares[0]
    with structlog.contextvars.bound_contextvars(
        rebuild_process=0, pid=os.getpid(), partitions=list(share)
    ):
        _fold(job, 0, job.log, counters, on_batch)


def _fold_share(job: _Job, index: int, counters: Any, errors: Any, parent: int) -> None:
    """A forked process: folds its share of the partitions into the new store, completes
    the customers it holds, and exits 0; any failure its runner did not get past is sent to
    the parent and exits 1."""
    _die_with_parent(parent)
    share = job.shares[index]
    structlog.contextvars.bind_contextvars(
        rebuild_process=index, pid=os.getpid(), partitions=list(share)
    )
    log: Log | None = None
    try:
        log = _reopened(job.log)
        _fold(job, index, log, counters, None)
    except BaseException as exc:
        logger.error("rebuild process failed", error=f"{type(exc).__name__}: {exc}")
        errors.put(f"{type(exc).__name__}: {exc}")
        sys.exit(1)
    finally:
        if log is not None:
            log.close()


def _fold(
    job: _Job, index: int, log: Log, counters: Any, on_batch: Callable[[], None] | None
) -> None:
    """Folds share ``index`` into the new store and completes the customers it holds; its
    counts go to its slots of ``counters``."""
    count = len(job.shares)
    # What the single process may hold, split: the processes together stay within it.
    cache_size = max(1, job.cache_size // count)
    cache_weight = _share_weight(job.cache_weight, count)
    first = index * _SLOTS
    keys = CustomerKeys(job.base)
    runner: Runner | None = None
    try:
        runner = Runner(
            log,
            job.new_file,
            keys=keys,
            topic=job.topic,
            dlq_topic=job.dlq_topic,
            group=None,
            partitions=job.shares[index],
            batch_size=job.batch_size,
            follow_swaps=False,
            produce_dead_letters=False,
            max_future=job.max_future,
            rebuilding=True,
            cache_size=cache_size,
            cache_weight=cache_weight,
            shared_writes=_TURNS and not is_postgres(job.new_file),
        )
        turns = getattr(runner.store.backend, "turns", None)

        def counted(stats: RunnerStats) -> None:
            counters[first] = stats.processed
            counters[first + 1] = stats.duplicates
            counters[first + 2] = stats.dead_letters
            counters[first + 3] = stats.keyless
            if turns is not None:
                counters[first + 4] = turns.waits
                counters[first + 5] = int(turns.waited_s * 1e6)
            if on_batch is not None:
                on_batch()

        runner.on_batch = counted
        runner.run_until_caught_up(timeout_s=24 * 3600, retry_for_s=job.retry_for_s)
        runner.run_until_caught_up(timeout_s=600, retry_for_s=job.retry_for_s)
        runner.store.complete()
        if turns is not None:  # complete()'s writes took turns too
            counters[first + 4] = turns.waits
            counters[first + 5] = int(turns.waited_s * 1e6)
        logger.info(
            "rebuild share folded",
            events=counters[first],
            write_turns=turns.turns if turns else None,
            write_waits=turns.waits if turns else None,
            write_waited_s=round(turns.waited_s, 3) if turns else None,
        )
    finally:
        if runner is not None:
            runner.close()
        keys.close()


def _die_with_parent(parent: int) -> None:
    """Killed with the rebuild: a parent killed outright (SIGKILL, the OOM killer) runs no
    cleanup, and its daemon processes would go on folding a store nobody will swap in for
    as long as their share takes. Linux's parent-death signal; elsewhere they run on."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(1)


def _share_weight(weight: int, count: int) -> int:
    """Each of ``count`` processes' cache weight, so that together they hold what one
    process may: the weight split, less what each process beyond the first costs of its own
    (its interpreter, the imported code's pages as they are written, malloc arenas, SQLite
    connections: ~45 MiB at 1M, measured as PSS, and a margin), at a quarter of an even
    split at least."""
    return max(weight // (4 * count), (weight - (count - 1) * _PROCESS_WEIGHT) // count, 1)


def _reopened(log: Log) -> Log:
    """The log for a forked process: the parent's clients (sockets, threads) are its own."""
    reopened: Callable[[], Log] | None = getattr(log, "reopened", None)
    if reopened is None:
        raise RebuildFailed(
            f"{log!r} cannot be opened again in another process: rebuild with one process "
            "(JOURNEY_REBUILD_PROCESSES=1)"
        )
    return reopened()


def _remove_turns_file(new_file: StoreAddress) -> None:
    if not is_postgres(new_file):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{new_file}.writer").unlink()


def _remove_failed(new_file: StoreAddress) -> None:
    """The files of a rebuild that failed: its store, journals and marker (on PostgreSQL
    its schema stays, for the operator to drop: dropping one is not done unasked)."""
    if is_postgres(new_file):
        return
    for suffix in ("", "-journal", "-wal", "-shm", ".checked", ".writer"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{new_file}{suffix}").unlink()
    logger.info("failed rebuild's files removed", store=describe(new_file))


def balanced_shares(
    partitions: Sequence[int], sizes: Mapping[int, int], count: int
) -> list[tuple[int, ...]]:
    """``partitions`` dealt into ``count`` shares of about as many messages each (``sizes``:
    a partition's high-water mark): the largest first, each to the share holding fewest so
    far. By number (0, 2, 4 | 1, 3, 5) one process of a 1M rebuild got 52.5 % of the
    messages and 13 of the 20 heavy customers, and folded on alone after the other was done
    (docs/BENCHMARKS.md, "Rebuild shares by size"). Each share in partition order."""
    shares: list[list[int]] = [[] for _ in range(count)]
    held = [0] * count
    for partition in sorted(partitions, key=lambda p: (-sizes.get(p, 0), p)):
        least = min(range(count), key=lambda i: (held[i], len(shares[i]), i))
        shares[least].append(partition)
        held[least] += sizes.get(partition, 0)
    return [tuple(sorted(share)) for share in shares]


def _partitions(log: Log, topic: str) -> Sequence[int]:
    try:
        return sorted(log.partitions(topic))
    except Exception:  # the topic does not exist yet: nothing to replay
        return []
