"""`journey metrics` on an embedded log: JSON with the agreed keys, groups, a table, business
hours from the rules file, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.embedded_log import EmbeddedLog
from consumers.log import OutgoingMessage
from domain import catalogue as c
from domain.envelope import encode, new_touchpoint

JOURNEY = Path(sys.executable).with_name("journey")
FRIDAY_EVENING = datetime(2026, 11, 27, 17, 30, tzinfo=UTC)  # 18:30 in Stockholm
MONDAY_MORNING = datetime(2026, 11, 30, 8, 30, tzinfo=UTC)  # 09:30 in Stockholm
RULES = {
    "business_hours": {
        "Support SE": {
            "time_zone": "Europe/Stockholm",
            "hours": {d: ["08:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": ["2026-12-25"],
        }
    },
    "business_time": {"first_reply": ["email"]},
}


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("metrics")
    log = EmbeddedLog(str(cwd / "log.db"))
    log.ensure_topics(["journey.touchpoints"], 2)
    story = [
        ("cust-1", c.ComplaintFiled(case_id="k1", channel="email", product="TV",
                                    team="Support SE"), FRIDAY_EVENING),
        ("cust-1", c.AutoAcknowledgementSent(case_id="k1", channel="email"),
         FRIDAY_EVENING + timedelta(minutes=1)),
        ("cust-1", c.ReplySent(case_id="k1", channel="email", agent="Ann", team="Support SE",
                               country="SE"), MONDAY_MORNING),
        ("cust-2", c.InquiryReceived(case_id="k2", channel="chat", body="hello?"),
         FRIDAY_EVENING),
    ]  # fmt: skip
    log.produce(
        "journey.touchpoints",
        [
            OutgoingMessage(
                key=cid.encode(),
                value=encode(
                    new_touchpoint(
                        data, customer_id=cid, occurred_at=at, source="t", event_id=uuid.uuid4()
                    )
                ),
                timestamp_ms=int(at.timestamp() * 1000),
            )
            for cid, data, at in story
        ],
    )
    log.close()
    (cwd / "rules.json").write_text(json.dumps(RULES), encoding="utf-8")
    return cwd


def journey(cwd: Path, *args: str, rules: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    env["COLUMNS"] = "200"
    if rules:
        env["JOURNEY_RULES"] = str(cwd / "rules.json")
    return subprocess.run(
        [str(JOURNEY), "--broker", "embedded://log.db", "--log-level", "warning", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


PERIOD = ("--since", "2026-11-01", "--until", "2026-12-01", "--as-of", "2026-12-01")


def test_json_has_the_agreed_keys_and_counts_business_hours(place: Path) -> None:
    done = journey(place, "metrics", *PERIOD, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert list(result)[:6] == [
        "customers", "promises", "first_reply_hours", "unanswered_share",
        "contacts_per_resolved_case", "reviews",
    ]  # fmt: skip
    assert set(result["promises"]) == {"made", "kept", "kept_late", "broken", "cancelled", "open"}
    assert set(result["reviews"]) == {"n", "low_scores", "answer_hours"}
    assert set(result["reviews"]["answer_hours"]) == {"p50", "p90"}
    # Friday 18:30 to Monday 09:30: 1.5 open hours, not 63
    assert result["first_reply_hours"] == {"p50": 1.5, "p90": 1.5, "p99": 1.5, "n": 1}
    assert result["unanswered_share"] == 0.5  # cust-2 got no reply; the ack is none
    assert result["customers"] == 2
    around_the_clock = json.loads(journey(place, "metrics", *PERIOD, "--json", rules=False).stdout)
    assert around_the_clock["first_reply_hours"]["p50"] == 63.0


def test_by_team_groups_and_a_table(place: Path) -> None:
    done = journey(place, "metrics", *PERIOD, "--by", "team", "--json")
    assert done.returncode == 0, done.stderr
    groups = json.loads(done.stdout)["groups"]
    assert set(groups) == {"Support SE", "(none)"}
    assert groups["Support SE"]["first_reply_hours"]["n"] == 1
    table = journey(place, "metrics", *PERIOD, "--by", "week")
    assert table.returncode == 0, table.stderr
    assert "2026-W48" in table.stdout and "all" in table.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--since", "2026-11-01", "--until", "2026-10-01"), "must be after --since"),
        (("--since", "yesterday", "--until", "2026-10-01"), "is not a date or time"),
        (("--since", "2026-11-01T08:00", "--until", "2026-12-01"), "has no time zone"),
        ((*PERIOD, "--by", "weekly"), "unknown grouping 'weekly'"),
    ],
)
def test_a_wrong_period_or_grouping_is_one_line(
    place: Path, args: tuple[str, ...], says: str
) -> None:
    done = journey(place, "metrics", *args)
    assert done.returncode == 2
    assert says in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_a_mistyped_log_is_not_created(tmp_path: Path) -> None:
    done = journey(tmp_path, "metrics", *PERIOD, rules=False)
    assert done.returncode == 2 and "no embedded log" in done.stderr
    assert not (tmp_path / "log.db").exists()
