"""API keys, their roles, and the console's sign-in sessions.

A key is ``jk_`` + 43 URL-safe characters: 256 random bits, shown once when it is created.
Only its SHA-256 digest is kept. A fast unsalted hash is enough here, and a slow one would
be a cost without a benefit: slow, salted hashes (argon2, bcrypt) protect *guessable*
secrets — passwords — against someone who stole the table; nobody can guess one of 2^256
keys, however fast each guess is, so the digest only has to be one-way. It is checked on
every request, where argon2's tens of milliseconds would be the slowest part of an answer.
Sessions (``js_`` + 256 bits, the console's cookie) are kept the same way, with the key they
were opened with: revoking a key ends its sessions at once.

Where keys live: beside the store, never in it, because ``journey rebuild`` replaces the
store with a fresh one (projections/location.py): next to a SQLite store
``views.db`` in ``views.db.keys`` (a small SQLite file of its own); with a PostgreSQL store in
the tables ``public.journey_keys`` and ``public.journey_sessions`` of the same database
(the schema a rebuild never replaces, beside the active-store pointer).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

from domain.errors import JourneyError
from projections.location import (
    CONNECT_TIMEOUT_S,
    StoreAddress,
    StoreUnreachable,
    describe,
    is_postgres,
    reachability,
    with_schema,
)

__all__ = [
    "KEY_PREFIX",
    "ROLES",
    "SESSION_PREFIX",
    "SESSION_TTL",
    "ApiKey",
    "KeyError_",
    "KeyStore",
    "Principal",
    "Role",
    "digest",
    "keys_address",
]

Role = Literal["service", "agent", "analyst", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
KEY_PREFIX = "jk_"
SESSION_PREFIX = "js_"
SESSION_TTL = timedelta(hours=12)
# A bearer value longer than this is not one of ours: refused before it is hashed.
MAX_SECRET_CHARS = 200
# last_used is written at most this often per key: a write per request would cost more
# than the request.
_TOUCH_EVERY = timedelta(minutes=1)


class KeyError_(JourneyError):
    """A key command cannot do what was asked (unknown name, name taken, bad role)."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def as_dict(self) -> dict[str, str | None]:
        def iso(at: datetime | None) -> str | None:
            return at.isoformat() if at else None

        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
        }


@dataclass(frozen=True)
class Principal:
    """Who is asking: the key (by id and name) and its role; ``via`` says how it came
    (``bearer`` header or console ``session`` cookie)."""

    key_id: str
    name: str
    role: Role
    via: Literal["bearer", "session"] = "bearer"


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def keys_address(store: StoreAddress) -> StoreAddress:
    """Where the keys of the store at ``store`` live (see the module's docstring)."""
    if is_postgres(store):
        assert isinstance(store, str)
        return with_schema(store, None)
    path = Path(store)
    return path.with_name(path.name + ".keys")


def _now() -> datetime:
    return datetime.now(UTC)


def _text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


_TABLES = [
    """CREATE TABLE IF NOT EXISTS {schema}journey_keys (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
        digest {blob} NOT NULL UNIQUE, created_at TEXT NOT NULL, last_used_at TEXT,
        revoked_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS {schema}journey_sessions (
        digest {blob} PRIMARY KEY, key_id TEXT NOT NULL, created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL)""",
]


class _Lost(StoreUnreachable):
    """The key store's connection, opened before, died (the database went away since)."""


class KeyStore:
    """The keys and sessions of one store (see :func:`keys_address`). Thread-safe: one
    connection, used under a lock (each call is one or two short statements)."""

    def __init__(self, store: StoreAddress, *, create: bool = True) -> None:
        self.address = keys_address(store)
        if not create and isinstance(self.address, Path) and not self.address.is_file():
            raise KeyError_(
                f"no keys at {self.address}: check --store / JOURNEY_STORE "
                "(`journey keys create` makes the first)"
            )
        self._lock = threading.Lock()
        self._touched: dict[str, datetime] = {}
        self._conn: Any = None
        self._postgres = is_postgres(self.address)
        with self._cursor() as cur:
            words = {"schema": "public." if self._postgres else "", "blob": "BLOB"}
            if self._postgres:
                words["blob"] = "BYTEA"
            for statement in _TABLES:
                cur.execute(statement.format(**words))

    @property
    def where(self) -> str:
        return describe(self.address)

    def _connect(self) -> Any:
        if self._postgres:
            import psycopg

            assert isinstance(self.address, str)
            try:
                return psycopg.connect(
                    self.address, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                )
            except psycopg.OperationalError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
                raise StoreUnreachable(
                    f"the key store {self.where} did not answer ({first})", first
                ) from None
        if not Path(self.address).exists():
            # Only hashes, but nobody else's business: owner-only, as SQLite's -wal and
            # -shm files then are too (they take the database file's mode).
            os.close(os.open(self.address, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(
            str(self.address), timeout=30, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        if not self._postgres:
            with self._used() as cur:
                yield cur
            return
        # The keys live in the store's database: while it is known away, a key check fails
        # at once instead of waiting for a connect timeout of its own.
        assert isinstance(self.address, str)
        with reachability.attempt(self.address), self._used() as cur:
            yield cur

    @contextmanager
    def _used(self) -> Iterator[Any]:
        with self._lock:
            kept = self._conn is not None  # opened before: it may have died since
            if self._conn is None:
                self._conn = self._connect()
            try:
                cur = self._conn.cursor()
                yield cur
            except Exception as exc:
                if self._postgres:  # a broken connection is opened again next time
                    self._conn.close()
                    self._conn = None
                    if any(k.__name__ == "OperationalError" for k in type(exc).__mro__):
                        # the database went away mid-session: as unreachable as at connect
                        said = str(exc).strip()
                        why = f"{type(exc).__name__}: {said.splitlines()[0][:200] if said else ''}"
                        lost = _Lost if kept else StoreUnreachable
                        raise lost(
                            f"the key store {self.where} did not answer ({why})", why
                        ) from None
                raise

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._postgres else statement

    def _run(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if not self._postgres:
            return self._execute(statement, params)
        assert isinstance(self.address, str)
        with reachability.attempt(self.address):
            try:
                return self._execute(statement, params)
            except _Lost:
                # The connection kept from before an outage: a read is tried once more on
                # a new one (the first key check after the database is back is answered).
                if not statement.lstrip().upper().startswith("SELECT"):
                    raise
                return self._execute(statement, params)

    def _execute(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._used() as cur:
            cur.execute(self._sql(statement), tuple(params))
            if cur.description is None:  # a statement without rows
                return []
            return [tuple(r) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ------------------------------------------------------------------ keys

    def create(self, role: str, name: str | None = None) -> tuple[ApiKey, str]:
        """A new key: (its record, the secret — shown once, never stored)."""
        if role not in ROLES:
            raise KeyError_(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        key_id = uuid.uuid4().hex[:12]
        name = (name or f"{role}-{key_id[:6]}").strip()
        if not name or len(name) > 100 or any(ch.isspace() for ch in name):
            raise KeyError_(f"key name {name!r}: 1-100 characters, no spaces")
        if self._find(name) is not None:
            raise KeyError_(f"a key named {name!r} exists: choose another --name")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        created = _now()
        self._run(
            "INSERT INTO journey_keys (id, name, role, digest, created_at) VALUES (?, ?, ?, ?, ?)",
            (key_id, name, role, digest(secret), _text(created)),
        )
        return ApiKey(key_id, name, role, created, None, None), secret

    def list(self) -> list[ApiKey]:
        rows = self._run(
            "SELECT id, name, role, created_at, last_used_at, revoked_at FROM journey_keys"
            " ORDER BY created_at, name"
        )
        return [_key(r) for r in rows]

    def _find(self, name_or_id: str) -> ApiKey | None:
        rows = self._run(
            "SELECT id, name, role, created_at, last_used_at, revoked_at FROM journey_keys"
            " WHERE name = ? OR id = ?",
            (name_or_id, name_or_id),
        )
        return _key(rows[0]) if rows else None

    def revoke(self, name_or_id: str) -> ApiKey:
        """Revoke a key (by name or id); its sessions end with it. Revoking twice is fine."""
        found = self._find(name_or_id)
        if found is None:
            raise KeyError_(f"no key named {name_or_id!r} (see `journey keys list`)")
        if found.revoked_at is None:
            self._run(
                "UPDATE journey_keys SET revoked_at = ? WHERE id = ?", (_text(_now()), found.id)
            )
        self._run("DELETE FROM journey_sessions WHERE key_id = ?", (found.id,))
        result = self._find(found.id)
        assert result is not None
        return result

    def authenticate(self, secret: str) -> Principal | None:
        """The key ``secret`` is, if it exists and is not revoked."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > MAX_SECRET_CHARS:
            return None
        rows = self._run(
            "SELECT id, name, role FROM journey_keys WHERE digest = ? AND revoked_at IS NULL",
            (digest(secret),),
        )
        if not rows:
            return None
        key_id, name, role = rows[0]
        self._touch(key_id)
        return Principal(key_id, name, role, "bearer")

    def _touch(self, key_id: str) -> None:
        now = _now()
        last = self._touched.get(key_id)
        if last is not None and now - last < _TOUCH_EVERY:
            return
        self._touched[key_id] = now
        self._run("UPDATE journey_keys SET last_used_at = ? WHERE id = ?", (_text(now), key_id))

    # ------------------------------------------------------------------ sessions

    def open_session(self, secret: str) -> tuple[Principal, str] | None:
        """Sign in with a key: (who, the session secret for the cookie), or None."""
        who = self.authenticate(secret)
        if who is None:
            return None
        session = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = _now()
        self._run("DELETE FROM journey_sessions WHERE expires_at < ?", (_text(now),))
        self._run(
            "INSERT INTO journey_sessions (digest, key_id, created_at, expires_at)"
            " VALUES (?, ?, ?, ?)",
            (digest(session), who.key_id, _text(now), _text(now + SESSION_TTL)),
        )
        return Principal(who.key_id, who.name, who.role, "session"), session

    def session(self, secret: str) -> Principal | None:
        """Who a session cookie belongs to, while it and its key are valid."""
        if not secret.startswith(SESSION_PREFIX) or len(secret) > MAX_SECRET_CHARS:
            return None
        rows = self._run(
            "SELECT k.id, k.name, k.role FROM journey_sessions s"
            " JOIN journey_keys k ON k.id = s.key_id"
            " WHERE s.digest = ? AND s.expires_at > ? AND k.revoked_at IS NULL",
            (digest(secret), _text(_now())),
        )
        if not rows:
            return None
        key_id, name, role = rows[0]
        self._touch(key_id)
        return Principal(key_id, name, role, "session")

    def close_session(self, secret: str) -> None:
        self._run("DELETE FROM journey_sessions WHERE digest = ?", (digest(secret),))


def _key(row: tuple[Any, ...]) -> ApiKey:
    key_id, name, role, created, used, revoked = row
    created_at = _time(created)
    assert created_at is not None
    return ApiKey(key_id, name, role, created_at, _time(used), _time(revoked))
