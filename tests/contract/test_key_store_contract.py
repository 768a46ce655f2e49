"""The key table's contract, on every store (SQLite beside the file, a real PostgreSQL):
one key per customer however many writers race to make it, reads that make nothing,
forgetting only what was made up to an erasure, and a new key for the same id after it."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from projections.keys import CustomerKeys


def test_two_writers_racing_for_a_new_customer_agree_on_one_key(
    store_address: Path | str,
) -> None:
    cid = f"c-{uuid.uuid4().hex[:6]}"
    got: list[Any] = []
    stores = [CustomerKeys(store_address) for _ in range(4)]
    barrier = threading.Barrier(len(stores))

    def make(keys: CustomerKeys) -> None:
        barrier.wait()
        got.append(keys.for_writing([cid])[cid])

    threads = [threading.Thread(target=make, args=(k,)) for k in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len({(k.kid, k.key) for k in got}) == 1
        assert stores[0].count() == 1
        # forgetting deletes only keys made up to the erasure's time
        assert stores[0].forget([cid], datetime(2000, 1, 1, tzinfo=UTC)) == 0
        assert stores[0].forget([cid], datetime.now(UTC) + timedelta(seconds=1)) == 1
        assert stores[1].for_reading([cid]).keys == {}
        fresh = stores[2].for_writing([cid])[cid]
        assert fresh.kid != got[0].kid
    finally:
        for k in stores:
            k.close()


def test_reading_makes_no_key_and_a_key_never_shows_in_a_repr(store_address: Path | str) -> None:
    keys = CustomerKeys(store_address)
    try:
        assert keys.for_reading(["nobody"]).keys == {}
        assert keys.count() == 0
        made = keys.for_writing(["c-1", "c-2"])
        assert keys.count() == 2
        assert made["c-1"].key.hex() not in repr(made) and made["c-1"].kid in repr(made)
        ring = keys.for_reading(["c-1", "c-2", "c-3"])
        assert ring.lookup("c-1", made["c-1"].kid) == made["c-1"].key
        assert ring.lookup("c-1", made["c-2"].kid) is None  # another customer's key id
        assert ring.misses == 1
    finally:
        keys.close()
