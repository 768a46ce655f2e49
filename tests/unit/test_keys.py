"""The key store on both stores (SQLite file beside the store; PostgreSQL tables in the
database's public schema): keys and sessions, revocation, and that a rebuild's swap to a new
store (a new file, a new schema) leaves them where every service finds them."""

from __future__ import annotations

from pathlib import Path

import pytest

from journey.security.keys import KeyError_, KeyStore, digest, keys_address
from projections.location import rebuild_target, swap_store
from projections.store import JourneyStore


def test_keys_and_sessions_on_every_store(store_address: Path | str) -> None:
    JourneyStore(store_address).close()  # a store, as `journey run` makes it
    keys = KeyStore(store_address)
    try:
        made, secret = keys.create("agent", "ann")
        assert secret.startswith("jk_") and len(secret) == 46  # 256 bits, base64url
        assert keys.authenticate(secret) is not None
        assert keys.authenticate(secret + "x") is None
        with pytest.raises(KeyError_, match="exists"):
            keys.create("agent", "ann")
        with pytest.raises(KeyError_, match="unknown role"):
            keys.create("root", "bob")
        opened = keys.open_session(secret)
        assert opened is not None
        who, session = opened
        assert (who.name, who.role, who.via) == ("ann", "agent", "session")
        assert keys.session(session) is not None

        # A rebuild makes a new store active; the keys stay beside the base store.
        new = rebuild_target(store_address, "20261201T000000000000")
        JourneyStore(new).close()
        swap_store(store_address, new)
        again = KeyStore(store_address)
        try:
            assert again.authenticate(secret) is not None
            assert [k.name for k in again.list()] == ["ann"]
            assert again.revoke("ann").revoked_at is not None
        finally:
            again.close()
        assert keys.authenticate(secret) is None  # seen at once by the other instance
        assert keys.session(session) is None  # and its sessions end with it
        assert made.id and digest(secret) != secret.encode()
    finally:
        keys.close()


def test_reading_keys_never_creates_a_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyError_, match="no keys at"):
        KeyStore(tmp_path / "nope.db", create=False)
    assert not keys_address(tmp_path / "nope.db").exists()  # type: ignore[union-attr]
