"""Shared by the service, browser and Kafka tests: the seed stories played into a store once,
a running service (real uvicorn on a free port) over a copy of it, and touchpoint builders."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from consumers.embedded_log import EmbeddedLog
from consumers.log import Log
from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from journey.emitter import Emitter
from journey.pipeline import ManualClock, Pipeline
from journey.service import ServiceOptions, create_app
from journey.service.guard import SESSION_COOKIE
from journey.service.runtime import Service
from journey.service.server import RunningServer, start_in_thread
from journey.settings import Settings
from journey.stories import all_touchpoints

TOPIC = "journey.touchpoints"


def play_stories(directory: Path) -> Path:
    """The seed stories through the pipeline into ``directory`` (log.db, views.db), as the
    demo does: relative to now, so deadlines are as an agent would see them today."""
    directory.mkdir(parents=True, exist_ok=True)
    log = EmbeddedLog(str(directory / "log.db"))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    touchpoints = all_touchpoints(now)
    clock = ManualClock(touchpoints[0].occurred_at)
    pipeline = Pipeline(log, directory / "views.db", topic=TOPIC, clock=clock)
    try:
        pipeline.play(touchpoints, clock, now)
    finally:
        pipeline.close()
        log.close()
    return directory


def copy_store(golden: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for item in golden.iterdir():
        shutil.copy2(item, target / item.name)
    return target


@dataclass
class Running:
    """A service under test: its HTTP client, the Service object and an emitter of our own
    that produces straight to the log (as any other backend would).

    ``http`` carries an admin key (admin may do everything: the tests of what the service
    answers need not care who asks); ``client(role)`` is a client with a new key of that
    role, ``anonymous`` one without any (tests/service/test_access.py)."""

    http: httpx.Client
    server: RunningServer
    service: Service
    log: Log
    emitter: Emitter
    admin_key: str = ""

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(url, **kwargs)

    def new_key(self, role: str, name: str | None = None) -> str:
        _, secret = self.service.keys.create(role, name)
        return secret

    def client(self, role: str, name: str | None = None) -> httpx.Client:
        return self._client({"Authorization": f"Bearer {self.new_key(role, name)}"})

    @property
    def anonymous(self) -> httpx.Client:
        return self._client({})

    def _client(self, headers: dict[str, str]) -> httpx.Client:
        client = httpx.Client(base_url=self.server.url, timeout=30, headers=headers)
        self._clients.append(client)
        return client

    def session_cookie(self, role: str = "agent") -> dict[str, Any]:
        """A console session of a new key of ``role``, as a browser cookie (Playwright's
        ``add_cookies`` shape): what signing in on /console/sign-in leaves."""
        opened = self.service.keys.open_session(self.new_key(role))
        assert opened is not None
        return {
            "name": SESSION_COOKIE,
            "value": opened[1],
            "url": self.server.url,
            "httpOnly": True,
            "sameSite": "Strict",
        }

    def close_clients(self) -> None:
        for client in self._clients:
            client.close()

    def __post_init__(self) -> None:
        self._clients: list[httpx.Client] = []


@contextmanager
def running_service(
    settings: Settings, options: ServiceOptions, log: Log | None = None
) -> Iterator[Running]:
    own_log = log is None
    if log is None:
        log = EmbeddedLog(settings.broker.removeprefix("embedded://"))
    app = create_app(settings, options, log=log)
    server = start_in_thread(app)
    try:
        service: Service = app.state.service
        _, admin = service.keys.create("admin", f"test-admin-{uuid.uuid4().hex[:6]}")
        headers = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=server.url, timeout=30, headers=headers) as http:
            emitter = Emitter(log, topic=settings.topic, source="test")
            running = Running(http, server, service, log, emitter, admin)
            try:
                yield running
            finally:
                running.close_clients()
    finally:
        server.stop()
        if own_log:
            log.close()


def embedded_settings(directory: Path) -> Settings:
    return Settings(
        broker=f"embedded://{directory / 'log.db'}",
        store=f"sqlite:///{directory / 'views.db'}",
        topic=TOPIC,
    )


def inquiry(customer_id: str, subject: str, case_id: str | None = None) -> Touchpoint:
    return new_touchpoint(
        c.InquiryReceived(
            case_id=case_id or f"k-{uuid.uuid4().hex[:8]}", channel="email", subject=subject
        ),
        customer_id=customer_id,
        occurred_at=datetime.now(UTC),
        source="test",
    )


def envelope(customer_id: str, subject: str, **data: Any) -> dict[str, Any]:
    """A JSON envelope as a non-Python producer would send it."""
    return {
        "event_id": str(uuid.uuid4()),
        "type": "InquiryReceived",
        "schema_version": 1,
        "customer_id": customer_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": "helpdesk",
        "data": {"case_id": f"k-{uuid.uuid4().hex[:8]}", "channel": "email", "subject": subject}
        | data,
    }


def event_ids(answer: dict[str, Any]) -> set[str]:
    return {e["event_id"] for e in answer["data"]["timeline"]["entries"]}
