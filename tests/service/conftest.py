"""A running query service over a copy of the seed stories, on the embedded log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from journey.service import ServiceOptions
from tests.service.helpers import (
    Running,
    copy_store,
    embedded_settings,
    play_stories,
    running_service,
)


@pytest.fixture(scope="session")
def golden_stories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return play_stories(tmp_path_factory.mktemp("golden-stories"))


@pytest.fixture
def make_service(golden_stories: Path, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start a service over a fresh copy of the stories; options as keyword arguments."""
    with ExitStack() as stack:
        count = 0

        def start(**options: Any) -> Running:
            nonlocal count
            count += 1
            directory = copy_store(golden_stories, tmp_path / f"svc{count}")
            options.setdefault("max_wait_ms", 1000)
            options.setdefault("group", f"views-{count}")
            return stack.enter_context(
                running_service(embedded_settings(directory), ServiceOptions(**options))
            )

        yield start


@pytest.fixture
def svc(make_service: Callable[..., Running]) -> Running:
    return make_service()
