"""`journey demo` never wipes a log that a running demo server uses.

Before: the README's second quick-start line (`journey demo` while `make demo` serves)
deleted .demo/ under the running console, which then answered from a log and store that
were no longer the ones on disk — old data, marked fresh.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

JOURNEY = Path(sys.executable).with_name("journey")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}


def wait_until_answers(url: str, server: subprocess.Popen[str]) -> None:
    for _ in range(600):  # a readiness poll, not a timed assertion
        if server.poll() is not None:
            raise AssertionError(f"the demo server exited: {server.communicate()}")
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310  # 127.0.0.1 only
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


AGAIN = {
    "by default": {},
    "naming .demo/ explicitly": {  # as the README's second terminal exports it
        "JOURNEY_BROKER": "embedded://.demo/log.db",
        "JOURNEY_STORE": "sqlite:///.demo/views.db",
    },
}


@pytest.mark.parametrize("again_env", list(AGAIN.values()), ids=list(AGAIN))
def test_a_second_demo_refuses_and_leaves_the_running_servers_data_intact(
    tmp_path: Path, again_env: dict[str, str]
) -> None:
    port = free_port()
    server = subprocess.Popen(
        [str(JOURNEY), "demo", "--serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/healthz", server)
        log, views = tmp_path / ".demo" / "log.db", tmp_path / ".demo" / "views.db"
        before = (log.stat().st_ino, views.stat().st_ino, log.stat().st_size)

        again = subprocess.run(
            [str(JOURNEY), "demo"],
            cwd=tmp_path,
            env={**clean_env(), **again_env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert again.returncode == 2, again.stderr
        lines = [line for line in again.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), again.stderr
        assert str(server.pid) in lines[0] and str(port) in lines[0], lines
        # The same files, not replaced ones: the server still reads what it wrote.
        assert (log.stat().st_ino, views.stat().st_ino, log.stat().st_size) == before
        key = subprocess.run(  # a key for the demo's store, as the README makes one
            [str(JOURNEY), "keys", "create", "--role", "agent"],
            cwd=tmp_path,
            env={**clean_env(), **AGAIN["naming .demo/ explicitly"]},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/customers/cust-erik",
            headers={"Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310  # loopback
            assert answer.status == 200
    finally:
        server.terminate()
        server.communicate(timeout=60)


def test_once_the_server_is_gone_the_demo_plays_again(tmp_path: Path) -> None:
    for _ in range(2):
        done = subprocess.run(
            [str(JOURNEY), "demo"],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
