"""What a process knows of a PostgreSQL database it found unreachable (projections/location.py):
callers fail at once instead of each waiting for a connect timeout; one tries again at a
time; the first that gets through clears it. No database needed: the tries are ours."""

from __future__ import annotations

import time

import pytest

from projections import location
from projections.location import Reachability, StoreUnreachable, is_unreachable

URL = "postgresql://journey:pw@db.example:5432/journey"


def fail_once(reach: Reachability) -> None:
    with pytest.raises(StoreUnreachable), reach.attempt(URL):
        raise StoreUnreachable("the PostgreSQL store did not answer (timeout)", "timeout")


def test_while_known_away_a_caller_is_refused_without_trying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(location, "AWAY_RECHECK_S", 3600.0)
    reach = Reachability()
    fail_once(reach)
    tried = []
    refused = r"is unreachable \(timeout; .*every 3600 s\)"
    with pytest.raises(StoreUnreachable, match=refused), reach.attempt(URL):
        tried.append(1)
    assert tried == []
    assert "pw" not in (reach.away(URL) or "")
    # Another database of the same server is not known to be away.
    with reach.attempt(URL.replace("/journey", "/other")):
        tried.append(2)
    assert tried == [2]


def test_one_caller_tries_again_and_its_success_clears_it(monkeypatch: pytest.MonkeyPatch) -> None:
    reach = Reachability()
    fail_once(reach)
    monkeypatch.setattr(location, "AWAY_RECHECK_S", 0.0)
    # The one that tries; meanwhile another is refused.
    with reach.attempt(URL), pytest.raises(StoreUnreachable), reach.attempt(URL):
        pass
    assert reach.away(URL) is None
    with reach.attempt(URL):
        pass


def test_an_answer_of_another_kind_clears_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    reach = Reachability()
    fail_once(reach)
    monkeypatch.setattr(location, "AWAY_RECHECK_S", 0.0)
    with pytest.raises(ValueError), reach.attempt(URL):
        raise ValueError("bad SQL: the database answered")
    assert reach.away(URL) is None


def test_a_try_that_never_comes_back_does_not_stop_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reach = Reachability()
    fail_once(reach)
    monkeypatch.setattr(location, "AWAY_RECHECK_S", 0.0)
    hung = reach.attempt(URL)
    hung.__enter__()  # a try whose connection hangs
    with pytest.raises(StoreUnreachable), reach.attempt(URL):
        pass
    monkeypatch.setattr(location, "_TRY_STALE_S", 0.0)
    with reach.attempt(URL):
        pass
    assert reach.away(URL) is None


def test_who_waited_behind_a_failed_try_learns_it() -> None:
    reach = Reachability()
    entered = time.monotonic()
    assert reach.failed_since(URL, entered) is None
    fail_once(reach)
    assert reach.failed_since(URL, entered) == "timeout"
    assert reach.failed_since(URL, time.monotonic() + 1) is None


def test_what_counts_as_unreachable() -> None:
    import psycopg
    import psycopg.errors

    assert is_unreachable(psycopg.OperationalError("connection timeout expired"))
    assert is_unreachable(psycopg.errors.AdminShutdown("terminating connection"))
    assert not is_unreachable(psycopg.errors.QueryCanceled("statement timeout"))
    assert not is_unreachable(ValueError("no"))
    driver = psycopg.OperationalError("server closed the connection unexpectedly")
    try:
        try:
            raise driver
        except psycopg.OperationalError:
            wrapped = RuntimeError("wrapped")
            raise wrapped from wrapped  # a re-raise that points the cause at itself
    except RuntimeError as outer:
        assert outer.__context__ is driver
        assert is_unreachable(outer)
