"""The same event_id with other content is refused at the edge (409 / exit 2, naming the id)
where the engine can tell; the identical copy is accepted (idempotent re-send)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.service.helpers import Running, envelope


def _wait_folded(svc: Running, token: str) -> None:
    deadline = time.monotonic() + 10
    while svc.get("/healthz").json()["lag_events"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert svc.get("/search", params={"q": "x", "after": token}).status_code == 200


def test_post_events_answers_409_for_a_recorded_id_with_other_content(svc: Running) -> None:
    first = envelope("cust-conflict", "where is my order?")
    sent = svc.http.post("/events", json=first)
    assert sent.status_code == 201, sent.text
    _wait_folded(svc, sent.json()["token"])
    again = svc.http.post("/events", json=first)
    assert again.status_code == 201, "an identical re-send is idempotent, not a conflict"
    changed = first | {"data": first["data"] | {"subject": "refund me"}}
    refused = svc.http.post("/events", json=[envelope("cust-other", "fine"), changed])
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "conflicting_duplicate"
    assert first["event_id"] in error["message"]
    assert error["key"] == first["event_id"]
    assert error["message"].count("sha256:") == 2


def test_post_events_answers_409_for_one_id_twice_in_a_batch(svc: Running) -> None:
    one = envelope("cust-twice", "hello")
    other = one | {"data": one["data"] | {"subject": "bye"}}
    refused = svc.http.post("/events", json=[one, other])
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["key"] == one["event_id"]


def test_emit_on_the_embedded_log_exits_2_naming_the_id(tmp_path: Path) -> None:
    import json

    journey = str(Path(sys.executable).with_name("journey"))
    base = [journey, "--broker", f"embedded://{tmp_path / 'log.db'}",
            "--store", f"sqlite:///{tmp_path / 'views.db'}"]  # fmt: skip
    first = envelope("cust-1", "where is my order?")
    ok = subprocess.run([*base, "emit", json.dumps(first)], capture_output=True, text=True,
                        timeout=60, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    # fold it into the store, as `journey run` would
    from consumers.embedded_log import EmbeddedLog
    from consumers.runner import Runner

    log = EmbeddedLog(str(tmp_path / "log.db"))
    runner = Runner(log, tmp_path / "views.db", topic="journey.touchpoints",
                    dlq_topic="journey.touchpoints.dlq", follow_swaps=False)  # fmt: skip
    runner.run_until_caught_up(30)
    runner.close()
    log.close()
    changed = first | {"data": first["data"] | {"subject": "refund me"}}
    refused = subprocess.run([*base, "emit", json.dumps(changed)], capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert first["event_id"] in refused.stderr
    assert "conflicting_duplicate" in refused.stderr
    assert "Traceback" not in refused.stderr
    marks = EmbeddedLog(str(tmp_path / "log.db"))
    assert sum(marks.high_watermarks("journey.touchpoints").values()) == 1, "nothing produced"
    marks.close()
