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
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from domain.errors import JourneyError

__all__ = [
    "StoreAddress",
    "StoreUnreachable",
    "active_store",
    "describe",
    "is_postgres",
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


class StoreUnreachable(JourneyError):
    """The PostgreSQL store did not answer (try again when it does)."""


@contextmanager
def connect(url: str) -> Iterator[Any]:
    """A short autocommit connection to the database ``url`` names (its schema aside)."""
    import psycopg  # only PostgreSQL users need it

    try:
        conn = psycopg.connect(with_schema(url, None), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnreachable(
            f"the PostgreSQL store {describe(url)} did not answer ({first}); start it "
            "(`make postgres`) or check --store / JOURNEY_STORE"
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
