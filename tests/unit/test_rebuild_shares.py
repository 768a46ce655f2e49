"""How a rebuild on several processes deals the partitions out (consumers.rebuild)."""

from __future__ import annotations

import itertools
import random

from consumers.rebuild import balanced_shares


def test_shares_are_dealt_by_messages_not_by_partition_number() -> None:
    # The 1M bench topic's partitions: by number, 0, 2, 4 held 525,274 messages and
    # 1, 3, 5 474,726 (and 13 of the 20 heavy customers against 7).
    sizes = {0: 180109, 1: 147280, 2: 164391, 3: 164555, 4: 180774, 5: 162891}
    shares = balanced_shares(sorted(sizes), sizes, 2)
    held = sorted(sum(sizes[p] for p in share) for share in shares)
    assert held == [492445, 507555]
    assert all(list(share) == sorted(share) for share in shares)


def test_every_partition_is_in_exactly_one_share_and_no_share_is_empty() -> None:
    rng = random.Random(7)  # noqa: S311 -- a test's seeded sizes
    for _ in range(300):
        partitions = rng.sample(range(64), rng.randint(1, 24))
        sizes = {p: rng.choice([0, 0, 1, rng.randint(0, 10**6)]) for p in partitions}
        count = rng.randint(1, len(partitions))
        shares = balanced_shares(sorted(partitions), sizes, count)
        assert len(shares) == count and all(shares)
        assert sorted(itertools.chain.from_iterable(shares)) == sorted(partitions)
        # Greedy by size: no share exceeds an even split by more than its largest partition.
        total = sum(sizes.values())
        for share in shares:
            if len(share) > 1:
                assert sum(sizes[p] for p in share) <= total / count + max(sizes[p] for p in share)


def test_a_partition_the_sizes_leave_out_counts_as_empty() -> None:
    assert balanced_shares([0, 1, 2], {1: 5}, 2) == [(1,), (0, 2)]
