"""The ways to emit that docs/events.md shows work as written: the CLI, `POST /events` with
curl and the Python emitter (kcat: tests/integration/test_docs_kcat.py).

Before: docs/events.md named neither `POST /events` nor an emitter example one could run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = Path(sys.executable).with_name("journey")


def section() -> str:
    text = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    start = text.index("## Four ways to emit")
    return text[start : text.index("\n## ", start + 1)]


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", section(), flags=re.M | re.S)


def shown_output(block: str) -> list[dict[str, object]]:
    return [json.loads(line[2:]) for line in block.splitlines() if line.startswith("# {")]


def command(block: str) -> str:
    return "\n".join(line for line in block.splitlines() if not line.startswith("#"))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
    return tmp_path


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    out["PATH"] = f"{JOURNEY.parent}{os.pathsep}{out.get('PATH', '')}"
    return out


def test_the_cli_example_prints_what_the_docs_show(workdir: Path) -> None:
    (cli,) = [b for b in blocks("sh") if b.startswith("journey emit")]
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command(cli)],
        cwd=workdir,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == shown_output(cli)


def test_the_curl_example_posts_to_a_running_service(workdir: Path) -> None:
    (curl,) = [b for b in blocks("sh") if "POST /events" in b or "/events" in b]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(JOURNEY), "serve", "--port", str(port)],
        cwd=workdir,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):  # readiness, not a timed assertion
            assert server.poll() is None, server.communicate()
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            time.sleep(0.1)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command(curl).replace("8000", str(port))],
            cwd=workdir,
            env=env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        server.terminate()
        server.communicate(timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["tokens"] == ["journey.touchpoints:1:0", "journey.touchpoints:1:1"]
    assert answer["token"] == "journey.touchpoints:1:1"  # noqa: S105  # a position, not a secret


def test_the_python_example_runs_and_prints_what_the_docs_say(workdir: Path) -> None:
    (example,) = blocks("python")
    done = subprocess.run(
        [sys.executable, "-c", example],
        cwd=workdir,
        env={**env(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    said = re.search(r"# (journey\.touchpoints:\d+:\d+)", example)
    assert said is not None
    assert done.stdout.strip().splitlines()[-1] == said[1]  # after the log lines
