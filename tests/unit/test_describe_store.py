"""A store's address as messages, logs and the anonymous /healthz show it: never a password,
wherever the URL carries it (libpq also takes one as a query parameter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from projections.location import describe


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://journey:s3cret@db:5432/journey",
        "postgresql://journey@db:5432/journey?password=s3cret",
        "postgresql://journey@db/journey?sslmode=require&PASSWORD=s3cret&application_name=x",
        "postgresql://journey:s3cret@db/journey?password=s3cret",
    ],
)
def test_no_password_in_a_described_store(url: str) -> None:
    shown = describe(url)
    assert "s3cret" not in shown
    assert "db" in shown and "journey" in shown


def test_other_addresses_are_shown_as_they_are() -> None:
    assert describe(Path("/var/lib/journey/views.db")) == "/var/lib/journey/views.db"
    plain = "postgresql://journey@db/journey?sslmode=require"
    assert describe(plain) == plain
