"""One store transaction in flight on a thread of its own, while the caller folds the next.

A rebuild spent a fifth of its wall time waiting for its own writes (SQLite's
``executemany`` and ``commit``, on PostgreSQL the round trips and the commit), with the
second core idle. Both databases' drivers let go of the interpreter while the database
works, so a batch's transaction can run beside the decoding and folding of the next one.

The store keeps the order a reader sees: every read of the store first waits for the
transaction in flight (:meth:`WriteBehind.settle`), so nothing reads a state older than
what this writer has handed over. A transaction that fails surfaces at that next call, as
a :class:`WriteFailed` naming the batch; the store has forgotten whatever it cached from
that batch (``undo``), and the caller reads the partition again from the store's position,
as after any failed batch.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from projections.integrity import StoreError

__all__ = ["WriteBehind", "WriteFailed", "bound_heaps"]


class WriteFailed(StoreError):
    """The transaction of an earlier batch failed after the batch was handed over: nothing
    of it was recorded. ``applied`` is how many touchpoints that batch had counted."""

    def __init__(self, message: str, *, applied: int) -> None:
        super().__init__(message)
        self.applied = applied


class WriteBehind:
    """At most one transaction in flight, run by one thread (the order of transactions is
    the order they were handed over)."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future[None] | None = None
        self._undo: Callable[[], None] = _nothing
        self._what = ""
        self._applied = 0

    @property
    def in_flight(self) -> bool:
        """A transaction was handed over and not settled (it may have finished)."""
        return self._future is not None

    @property
    def running(self) -> bool:
        """A transaction is still running."""
        return self._future is not None and not self._future.done()

    def submit(
        self, write: Callable[[], None], *, undo: Callable[[], None], what: str, applied: int
    ) -> None:
        """Run ``write`` on the writer thread, after settling the one before it; ``undo``
        runs on the caller's thread if ``write`` fails."""
        self.settle()
        if self._pool is None:
            bound_heaps()
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._future = self._pool.submit(write)
        self._undo, self._what, self._applied = undo, what, applied

    def settle(self) -> None:
        """Wait for the transaction in flight; raise :class:`WriteFailed` if it failed."""
        future = self._future
        if future is None:
            return
        undo, what, applied = self._undo, self._what, self._applied
        self._future, self._undo = None, _nothing
        try:
            future.result()
        except BaseException as exc:
            undo()
            raise WriteFailed(
                f"recording {what} failed ({type(exc).__name__}: {exc}); nothing of it was "
                "recorded: it is read again from the store's position",
                applied=applied,
            ) from exc

    def close(self) -> None:
        """Settle (raising a failure) and stop the thread."""
        try:
            self.settle()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def _nothing() -> None:
    return None


# glibc's mallopt parameter for the most heaps ("arenas") it keeps.
_M_ARENA_MAX = -8
_ARENAS = 2


def bound_heaps() -> bool:
    """At most two malloc heaps in this process (glibc on Linux; elsewhere nothing). glibc
    gives a thread that allocates while another holds the heap an arena of its own (up to
    8 per core), each keeping the memory freed into it: with the writer thread allocating
    beside the fold, a 1M rebuild's peak RSS was ~30 MiB higher than with
    MALLOC_ARENA_MAX=2 (docs/BENCHMARKS.md). MALLOC_ARENA_MAX, when set, is left as it
    says. True when the bound was set."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, _ARENAS))
    except (OSError, AttributeError):  # not glibc: no mallopt, or not this parameter
        return False
