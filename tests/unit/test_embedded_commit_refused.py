"""A commit after this member's partitions went to another is refused as CommitRefused, so
the run loop can tell it from a transient failure (re-read from the store's positions
rather than retry the same commit)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from consumers.embedded_log import EmbeddedLog
from consumers.log import CommitRefused, LogError, LogUnavailable, OutgoingMessage


def test_a_commit_after_the_partitions_moved_on_is_commit_refused(tmp_path: Path) -> None:
    log = EmbeddedLog(str(tmp_path / "log.db"), session_timeout_s=0.3)
    try:
        log.ensure_topics(["t"], 2)
        log.produce("t", [OutgoingMessage(b"k", b"v")])
        slow = log.consumer("g", ["t"])
        assert slow.poll(1.0)
        taken = slow.assignment()
        time.sleep(0.5)  # silent for longer than the session: dropped from the group
        other = log.consumer("g", ["t"])
        deadline = time.monotonic() + 10
        while other.assignment() != taken:
            other.poll(0.05)
            assert time.monotonic() < deadline, other.assignment()
        with pytest.raises(CommitRefused) as refused:
            slow.commit(dict.fromkeys(taken, 1))
        assert not isinstance(refused.value, LogUnavailable)  # not "just retry"
        assert isinstance(refused.value, LogError)  # callers of the port still catch it
        assert all(other.committed(tp) is None for tp in taken)  # the refused one wrote nothing
    finally:
        log.close()
