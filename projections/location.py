"""Where a store is, and which one is active (blue-green): a SQLite file, or a PostgreSQL
database URL.

A rebuild builds a new store beside the active one and then makes it active at once:
* SQLite: ``<base>.<stamp>`` beside the file; ``<base>.current`` names the active file
  (replaced atomically);
* PostgreSQL: a schema ``journey_<stamp>`` in the same database; the table
  ``public.journey_active_store`` names the active schema (one row, updated in one
  transaction). A store URL with ``?schema=NAME`` is that schema's store.
Readers and writers follow a swap at their next look.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from domain.errors import JourneyError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "StoreAddress",
    "StoreUnreachable",
    "active_store",
    "describe",
    "is_postgres",
    "is_unreachable",
    "reachability",
    "rebuild_target",
    "store_exists",
    "swap_store",
    "with_schema",
]

StoreAddress = Path | str  # a SQLite file, or a postgresql:// URL

_POINTER_TABLE = "journey_active_store"
# Asking PostgreSQL which schema is active costs a round trip: at most this often per URL.
_CHECK_EVERY_S = 0.5
_checked: dict[str, tuple[float, str]] = {}
_checked_lock = threading.Lock()


# How long a new connection to PostgreSQL may take (libpq's smallest: 2 s). A server that
# is up answers in milliseconds; one that is down behind the network, hung or cut off
# never answers, and every caller would wait for this.
CONNECT_TIMEOUT_S = 2
# A database found unreachable is tried again at most this often (by one caller at a
# time); meanwhile every caller that needs it fails at once, saying so.
AWAY_RECHECK_S = 1.0


class StoreUnreachable(JourneyError):
    """The PostgreSQL store did not answer (try again when it does)."""

    def __init__(self, message: str, why: str = "") -> None:
        super().__init__(message)
        self.why = why or message  # what was met, in a few words


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or while handling."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        # Both links: `raise exc from exc` (a re-raise that keeps the type) points the
        # cause at itself, and the driver's error is left only as the context.
        todo += [current.__cause__, current.__context__]
        yield current


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says the database cannot be reached: a failed
    or broken connection, a pool that got none. A statement the database refused (a
    timeout, a deadlock, bad SQL) is no outage."""
    for current in causes(exc):
        if isinstance(current, StoreUnreachable):
            return True
        names = {k.__module__.partition(".")[0] + "." + k.__name__ for k in type(current).__mro__}
        if "psycopg.InterfaceError" in names:  # "the connection is closed"
            return True
        if "psycopg.OperationalError" in names:
            state = getattr(current, "sqlstate", None)
            # No state: the client's own (connect failed, connection lost, pool timeout);
            # class 08: connection exception; 57P01-03: the server is shutting down.
            if state is None or state.startswith("08") or state in {"57P01", "57P02", "57P03"}:
                return True
    return False


def _database(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}/{parts.path.lstrip('/')}"


@dataclass
class _Away:
    since: float
    tried: float  # when it was last tried
    why: str
    trying: bool = False


class Reachability:
    """Which PostgreSQL databases this process found unreachable. While one is, whoever
    needs it fails at once with :class:`StoreUnreachable` instead of waiting for a connect
    timeout of its own (a query service's request: ~2 s once, not 10 s every time); one
    caller a second tries again, and the first that gets through clears it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._away: dict[str, _Away] = {}

    def away(self, url: str) -> str | None:
        """Why the database of ``url`` is unreachable, or None when it is not known to be."""
        with self._lock:
            state = self._away.get(_database(url))
        return None if state is None else state.why

    @contextmanager
    def attempt(self, url: str) -> Iterator[None]:
        """Around one use of the database: refused at once while it is known away and no
        new try is due; what the use meets is recorded."""
        key = _database(url)
        now = time.monotonic()
        with self._lock:
            state = self._away.get(key)
            if state is not None:
                if state.trying or now - state.tried < AWAY_RECHECK_S:
                    raise StoreUnreachable(
                        f"the PostgreSQL store {describe(url)} is unreachable ({state.why}; "
                        f"for {now - state.since:.0f} s, tried again every {AWAY_RECHECK_S:g} s)",
                        state.why,
                    )
                state.trying = True
        try:
            yield
        except BaseException as exc:
            with self._lock:
                state = self._away.get(key)
                if is_unreachable(exc):
                    now = time.monotonic()
                    why = _first_line(exc)
                    if state is None:
                        self._away[key] = _Away(now, now, why)
                    else:
                        state.tried, state.why, state.trying = now, why, False
                elif state is not None:
                    del self._away[key]  # it answered, with an error of another kind
            raise
        with self._lock:
            self._away.pop(key, None)


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, StoreUnreachable):
        return exc.why
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


reachability = Reachability()


@contextmanager
def connect(url: str) -> Iterator[Any]:
    """A short autocommit connection to the database ``url`` names (its schema aside)."""
    import psycopg  # only PostgreSQL users need it

    with reachability.attempt(url):
        try:
            conn = psycopg.connect(
                with_schema(url, None), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnreachable(
                f"the PostgreSQL store {describe(url)} did not answer ({first}); start it "
                "(`make postgres`) or check --store / JOURNEY_STORE",
                first,
            ) from None
        with conn:
            yield conn


def is_postgres(address: StoreAddress) -> bool:
    return isinstance(address, str) and address.startswith(("postgresql://", "postgres://"))


def schema_of(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("schema")
    return values[0] if values else None


def with_schema(url: str, schema: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "schema"}
    if schema:
        query["schema"] = schema
    return parts._replace(query=urlencode(query)).geturl()


def describe(address: StoreAddress) -> str:
    """For messages and logs: a path, or the URL without its password (in the user part or,
    as libpq also takes it, a ``password=`` query parameter)."""
    if isinstance(address, Path):
        return str(address)
    parts = urlsplit(address)
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(name.lower() == "password" for name, _ in pairs):
        query = [(name, "***" if name.lower() == "password" else value) for name, value in pairs]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return parts.geturl()


def active_store(base: StoreAddress) -> StoreAddress:
    """The store currently serving ``base``."""
    if isinstance(base, Path):
        pointer = base.with_name(base.name + ".current")
        try:
            name = pointer.read_text().strip()
        except FileNotFoundError:
            return base
        return base.with_name(name) if name else base
    if not is_postgres(base) or schema_of(base):
        return base  # a URL naming its schema is that store, never redirected
    now = time.monotonic()
    with _checked_lock:
        seen = _checked.get(base)
    if seen is not None and now - seen[0] < _CHECK_EVERY_S:
        return with_schema(base, seen[1]) if seen[1] else base
    with connect(base) as conn:
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"public.{_POINTER_TABLE}",)
        ).fetchone()
        schema = ""
        if row and row[0]:
            found = conn.execute(f"SELECT schema FROM public.{_POINTER_TABLE}").fetchone()
            schema = str(found[0]) if found else ""
    with _checked_lock:
        _checked[base] = (now, schema)
    return with_schema(base, schema) if schema else base


def rebuild_target(base: StoreAddress, stamp: str) -> StoreAddress:
    """Where a rebuild started at ``stamp`` builds its new store."""
    if isinstance(base, Path):
        return base.with_name(f"{base.name}.{stamp}")
    return with_schema(base, f"journey_{stamp.lower()}")


def swap_store(base: StoreAddress, new: StoreAddress) -> None:
    """Atomically make ``new`` the active store for ``base``."""
    if isinstance(base, Path):
        assert isinstance(new, Path)
        pointer = base.with_name(base.name + ".current")
        tmp = pointer.with_name(pointer.name + f".tmp{os.getpid()}")
        tmp.write_text(new.name + "\n")
        os.replace(tmp, pointer)
        return
    assert isinstance(new, str)
    schema = schema_of(new) or "public"
    with connect(base) as conn, conn.transaction():
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS public.{_POINTER_TABLE} ("
            " id INTEGER PRIMARY KEY CHECK (id = 1), schema TEXT NOT NULL)"
        )
        conn.execute(
            f"INSERT INTO public.{_POINTER_TABLE} VALUES (1, %s)"
            " ON CONFLICT (id) DO UPDATE SET schema = excluded.schema",
            (schema,),
        )
    with _checked_lock:
        _checked.pop(base, None)


def store_exists(address: StoreAddress) -> bool:
    """Whether a store was made at ``address`` (read-only commands never create one)."""
    if isinstance(address, Path):
        return address.is_file()
    schema = schema_of(address) or "public"
    with connect(address) as conn:
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".journey_store_meta',)
        ).fetchone()
    return bool(row and row[0])
