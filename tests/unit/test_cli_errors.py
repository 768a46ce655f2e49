"""Every mistake a user can make at the command line: one line on stderr naming the problem
and what to do, a documented exit code (2: the invocation, configuration or input is wrong;
1: the log or store failed), no traceback, no secret anywhere in the output, and nothing
created on disk by a command that only reads.

Before: tracebacks for a bad broker URL; a password in the broker URL printed in the
connection error; `--store postgresql://…` hung and made a folder `postgresql:`; a mistyped
log or store path silently became a new empty one; "1.5" and "true" passed for numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from journey.schema import example_envelope
from projections.store import JourneyStore

JOURNEY = Path(sys.executable).with_name("journey")
SECRET = "Sup3rS3cretPw"  # noqa: S105  # a test secret: it must never appear in any output


def envelope() -> str:
    env = example_envelope("PromiseMade", 1)
    env["event_id"] = "3f8a1c2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
    return json.dumps(env)


@dataclass(frozen=True)
class Bad:
    args: tuple[str, ...]
    says: str  # the one line names the problem with this
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)
    with_store: bool = False  # an existing store (and embedded log), so the store is not it
    not_created: tuple[str, ...] = ()  # relative paths that must not exist afterwards


CASES = {
    "broker without port": Bad(("--broker", "kafka://localhost", "view", "c"), "host:port"),
    "broker with bad port": Bad(("--broker", "kafka://h:99999", "view", "c"), "host:port"),
    "broker unknown scheme": Bad(("--broker", "amqp://h:5672", "emit", "{}"), "unknown scheme"),
    "broker no scheme": Bad(("--broker", "localhost:9092", "view", "c"), "no scheme"),
    "secret in a bad broker url": Bad(
        ("--broker", f"kafka://bob:{SECRET}@nohost", "view", "c"), "host:port"
    ),
    "secret in an unknown-scheme url": Bad(
        ("--broker", f"amqp://bob:{SECRET}@h:1", "view", "c"), "unknown scheme"
    ),
    "secret in the url, broker unreachable": Bad(
        ("--broker", f"kafka://bob:{SECRET}@127.0.0.1:1", "emit", envelope()),
        "did not answer",
        code=1,
    ),
    "secret in JOURNEY_BROKER": Bad(
        ("view", "c"), "host:port", env={"JOURNEY_BROKER": f"kafka://bob:{SECRET}@nohost"}
    ),
    "postgresql store not answering": Bad(
        ("--store", f"postgresql://bob:{SECRET}@127.0.0.1:1/views", "view", "c"),
        "did not answer",
        code=1,
        not_created=("postgresql:",),
    ),
    "store unknown scheme": Bad(("--store", "mysql://h/db", "service-levels"), "unknown"),
    "store without scheme": Bad(("--store", "views.db", "view", "c"), "sqlite:///"),
    "missing store, view": Bad(
        ("--store", "sqlite:///nope.db", "view", "c"), "no store", not_created=("nope.db",)
    ),
    "missing store, service-levels": Bad(
        ("--store", "sqlite:///nope.db", "service-levels"), "no store", not_created=("nope.db",)
    ),
    "missing store, serve --no-runner": Bad(
        ("--store", "sqlite:///nope.db", "serve", "--no-runner", "--port", "0"),
        "no store",
        not_created=("nope.db",),
    ),
    "missing embedded log, view": Bad(
        ("--broker", "embedded://nolog.db", "view", "c"),
        "no embedded log",
        with_store=True,
        not_created=("nolog.db",),
    ),
    "missing embedded log, service-levels": Bad(
        ("--broker", "embedded://nolog.db", "service-levels"),
        "no embedded log",
        with_store=True,
        not_created=("nolog.db",),
    ),
    "missing embedded log, rebuild": Bad(
        ("--broker", "embedded://nolog.db", "rebuild"),
        "no embedded log",
        not_created=("nolog.db",),
    ),
    "max-wait-ms not whole": Bad(("serve", "--max-wait-ms", "1.5"), "max-wait-ms"),
    "max-wait-ms a bool": Bad(("serve", "--max-wait-ms", "true"), "max-wait-ms"),
    "port out of range": Bad(("serve", "--port", "70000"), "port"),
    "page zero": Bad(("view", "c", "--page", "0"), "page", with_store=True),
    "partitions not whole": Bad(
        ("emit", envelope()), "JOURNEY_PARTITIONS", env={"JOURNEY_PARTITIONS": "1.5"}
    ),
    "partitions a bool": Bad(
        ("emit", envelope()), "JOURNEY_PARTITIONS", env={"JOURNEY_PARTITIONS": "true"}
    ),
    "idle timeout not finite": Bad(
        ("emit", envelope()), "JOURNEY_IDLE_TIMEOUT", env={"JOURNEY_IDLE_TIMEOUT": "inf"}
    ),
    "cache size not a number": Bad(
        ("emit", envelope()), "JOURNEY_CACHE_SIZE", env={"JOURNEY_CACHE_SIZE": "lots"}
    ),
    "cache size zero": Bad(
        ("emit", envelope()), "JOURNEY_CACHE_SIZE", env={"JOURNEY_CACHE_SIZE": "0"}
    ),
    "cache weight not a number": Bad(
        ("run",),
        "JOURNEY_CACHE_WEIGHT: expected a whole number",
        env={"JOURNEY_CACHE_WEIGHT": "abc"},
    ),
    "cache weight negative": Bad(
        ("run",),
        "JOURNEY_CACHE_WEIGHT: Input should be greater than or equal to 1",
        env={"JOURNEY_CACHE_WEIGHT": "-5"},
    ),
    "chaos hook not a delay": Bad(
        ("run",),
        "JOURNEY_CHAOS_FOLD_DELAY_MS: a test-only hook",
        env={"JOURNEY_CHAOS_FOLD_DELAY_MS": "abc"},
        not_created=("journey.db", "journey-views.db"),
    ),
    "chaos hook negative": Bad(
        ("serve", "--port", "0"),
        "JOURNEY_CHAOS_FOLD_DELAY_MS: a test-only hook",
        env={"JOURNEY_CHAOS_FOLD_DELAY_MS": "-5"},
        not_created=("journey.db", "journey-views.db"),
    ),
    "rules file missing": Bad(
        ("service-levels",),
        "JOURNEY_RULES",
        env={"JOURNEY_RULES": "/nonexistent/rules.json"},
        with_store=True,
    ),
    "rules file not rules": Bad(
        ("service-levels",),
        "not valid service rules",
        env={"JOURNEY_RULES": "/etc/hostname"},
        with_store=True,
    ),
    "unknown log level": Bad(("--log-level", "loud", "view", "c"), "log-level"),
    "emit not json": Bad(("emit", "{not json"), "JSON"),
    "emit not an envelope": Bad(("emit", '{"type": "NoSuchThing"}'), "nothing of this batch"),
    "unknown team": Bad(("service-levels", "--team", "Nosuch"), "unknown team", with_store=True),
    "unknown channel, the known ones listed": Bad(
        ("service-levels", "--channel", "fax"), "web_form", with_store=True
    ),
    "negative hours": Bad(
        ("service-levels", "--due-within-hours", "-5"), "due-within-hours", with_store=True
    ),
    "unknown command": Bad(("frobnicate",), "frobnicate"),
    "unknown option": Bad(("view", "c", "--colour"), "--colour"),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_bad_invocation_is_one_line_without_traceback_or_secret(
    case: Bad, tmp_path: Path
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("JOURNEY_") or k in {"JOURNEY_TEST_KAFKA"}
    }
    env.update(case.env)
    if case.with_store:
        JourneyStore(tmp_path / "journey-views.db").close()
        if "--broker" not in case.args:
            from consumers.embedded_log import EmbeddedLog

            EmbeddedLog(str(tmp_path / "journey.db")).close()
    done = subprocess.run(
        [str(JOURNEY), *case.args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == case.code, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines
    assert case.says.lower() in lines[0].lower(), lines
    assert "Traceback" not in done.stderr + done.stdout
    assert SECRET not in done.stderr + done.stdout
    for name in case.not_created:
        assert not (tmp_path / name).exists(), f"{name} was created"


def test_with_log_level_debug_an_unexpected_error_shows_its_traceback(tmp_path: Path) -> None:
    """The one-line rule has one way out, for whoever debugs: --log-level debug."""
    (tmp_path / "journey-views.db").write_text("not a database at all, " * 100)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    (tmp_path / "journey.db").write_bytes(b"")
    quiet = subprocess.run(
        [str(JOURNEY), "view", "c"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    loud = subprocess.run(
        [str(JOURNEY), "--log-level", "debug", "view", "c"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert quiet.returncode != 0 and loud.returncode != 0
    assert "Traceback" not in quiet.stderr
    assert len([line for line in quiet.stderr.splitlines() if line.strip()]) == 1, quiet.stderr
    assert "Traceback" in loud.stderr
