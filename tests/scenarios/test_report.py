"""`journey report` on the seed stories: the file holds the figures `journey metrics` gives
for the same period, moment and log — overall, per week, per team and per channel — and
nothing in it reaches outside the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from journey.charts import format_number
from tests.service.helpers import play_stories
from tests.unit.test_report_html import parsed

JOURNEY = Path(sys.executable).with_name("journey")
NOW = datetime.now(UTC).replace(microsecond=0)
SINCE = (NOW - timedelta(days=200)).date().isoformat()
UNTIL = (NOW + timedelta(days=1)).date().isoformat()
AS_OF = NOW.isoformat()


def journey(log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command on the stories' log and store (its identity merges: persons counted as
    `journey metrics` counts them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    store = f"sqlite:///{log.with_name('views.db')}"
    return subprocess.run(
        [str(JOURNEY), "--broker", f"embedded://{log}", "--store", store, *args],
        cwd=log.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def stories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return play_stories(tmp_path_factory.mktemp("stories")) / "log.db"


@pytest.fixture(scope="module")
def report(stories: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report") / "report.html"
    args = ("--since", SINCE, "--until", UNTIL, "--as-of", AS_OF)
    done = journey(stories, "report", *args, "--out", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["report"] == str(out) and summary["touchpoints"] > 0
    assert not list(out.parent.glob(".*partial"))
    return out.read_text(encoding="utf-8")


def metrics(log: Path, *by: str) -> dict[str, Any]:
    args = ("--since", SINCE, "--until", UNTIL, "--as-of", AS_OF, "--json")
    done = journey(log, "metrics", *args, *by)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


class Tables(HTMLParser):
    """Every table of a page as rows of cell texts (header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table(html: str, *head: str) -> dict[str, list[str]]:
    """The table whose header row starts with ``head``: row name -> cells."""
    parser = Tables()
    parser.feed(html)
    for rows in parser.tables:
        if tuple(rows[0][: len(head)]) == head:
            return {row[0]: row[1:] for row in rows[1:]}
    raise AssertionError(f"no table headed {head}")


def n(value: Any) -> str:
    return format_number(value)


def test_the_report_of_the_stories_is_self_contained(report: str) -> None:
    page = parsed(report)
    assert not [t for t, _ in page.tags if t in {"script", "link", "img", "iframe", "object"}]
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "action"):
            assert attrs.get(name) is None or str(attrs[name]).startswith("#"), (tag, attrs)
    assert "http://" not in report.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in report


def test_the_period_at_a_glance_is_journey_metrics(stories: Path, report: str) -> None:
    overall = metrics(stories)
    glance = " ".join(" ".join(parsed(report).text).split())
    reply = overall["first_reply_hours"]
    assert overall["customers"] > 0 and reply["n"] > 0 and overall["promises"]["made"] > 0
    assert f"Customers in touch {n(overall['customers'])}" in glance
    assert f"First reply, median {n(reply['p50'])} h p90 {n(reply['p90'])} h" in glance
    assert f"Never answered {n(overall['unanswered_share'] * 100)} %" in glance
    assert f"Promises made {n(overall['promises']['made'])}" in glance
    promises = overall["promises"]
    assert (
        f"{n(promises['kept'])} kept, {n(promises['kept_late'])} kept late, "
        f"{n(promises['broken'])} broken" in glance
    )


@pytest.mark.parametrize(("by", "head"), [("team", "Team"), ("channel", "Channel")])
def test_every_team_and_channel_row_is_journey_metrics(
    stories: Path, report: str, by: str, head: str
) -> None:
    found = metrics(stories, "--by", by)["groups"]
    assert "(none)" in found, "the stories have promises and reviews outside any team"
    # What is in no group is named so in words: "(no team)".
    groups = {(f"(no {by})" if k == "(none)" else k): m for k, m in found.items()}
    rows = table(report, head, "Customers", "First reply p50 h")
    assert set(rows) == set(groups)
    for name, m in groups.items():
        reply, promises = m["first_reply_hours"], m["promises"]
        share = m["unanswered_share"]
        assert rows[name][:11] == [
            n(m["customers"]),
            n(reply["p50"]),
            n(reply["p90"]),
            n(reply["p99"]),
            n(reply["n"]),
            "—" if share is None else f"{n(share * 100)} %",
            n(m["contacts_per_resolved_case"]),
            n(promises["made"]),
            n(promises["kept"]),
            n(promises["kept_late"]),
            n(promises["broken"]),
        ], name


def test_every_week_is_there_with_journey_metrics(stories: Path, report: str) -> None:
    weeks = metrics(stories, "--by", "week")["groups"]
    replies = table(report, "Week", "p50 h", "p90 h", "Replies")
    promises = table(report, "Week", "Made", "Kept", "Kept late", "Broken")
    assert set(weeks) <= set(replies)  # and the quiet weeks between them
    assert len(replies) >= 28  # 200 days
    for week, m in weeks.items():
        reply, made = m["first_reply_hours"], m["promises"]
        assert replies[week] == [n(reply["p50"]), n(reply["p90"]), n(reply["n"])], week
        assert promises[week] == [
            n(made[k]) for k in ("made", "kept", "kept_late", "broken", "cancelled", "open")
        ], week
    quiet = set(replies) - set(weeks)
    assert quiet and all(replies[w] == ["—", "—", "0"] for w in quiet)


def test_a_wrong_period_or_place_is_one_line_and_no_file(stories: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    cases = [
        (("--since", UNTIL, "--until", SINCE, "--out", str(out)), "must be after"),
        (("--since", "2020-01-01", "--until", UNTIL, "--out", str(out)), "at most 106 weeks"),
        (("--since", "yesterday", "--until", UNTIL, "--out", str(out)), "not a date"),
        (("--since", SINCE, "--until", UNTIL, "--out", str(tmp_path)), "is a directory"),
    ]
    for args, words in cases:
        done = journey(stories, "report", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and words in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not out.exists()
