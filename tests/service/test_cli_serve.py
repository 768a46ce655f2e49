"""`journey serve` and `journey demo --serve` as a user runs them: a process that prints the
console's URL, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.service.helpers import copy_store

JOURNEY = str(Path(sys.executable).with_name("journey"))


@contextmanager
def journey(*args: str, cwd: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """The running command, its base URL and the rest of the console address it printed."""
    env = {**os.environ, "JOURNEY_LOG_FORMAT": "json"}
    env.pop("JOURNEY_BROKER", None)
    proc = subprocess.Popen(
        [JOURNEY, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = rest = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            match = re.search(r"Agent console[^:]*: (http://[^/\s]+)(\S*)", line)
            if match:
                url, rest = match.group(1), match.group(2)
                break
        assert url, f"journey {' '.join(args)} printed no console URL (exit {proc.poll()})"
        yield proc, url, rest
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_journey_serve_and_no_runner(golden_stories: Path, tmp_path: Path) -> None:
    data = copy_store(golden_stories, tmp_path / "data")
    common = [
        "--broker",
        f"embedded://{data / 'log.db'}",
        "--store",
        f"sqlite:///{data / 'views.db'}",
    ]
    made = subprocess.run(
        [JOURNEY, *common, "keys", "create", "--role", "agent", "--name", "ada"],
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.strip()  # the key alone on stdout; what it is on stderr
    assert key.startswith("jk_") and "ada" in made.stderr
    agent = {"Authorization": f"Bearer {key}"}
    with journey(*common, "serve", "--port", "0", cwd=tmp_path) as (_, url, _rest):
        health = httpx.get(f"{url}/healthz").json()  # anonymous: the one route that is
        assert health["runner"] == "running" and health["status"] == "ok"
        assert httpx.get(f"{url}/customers/cust-sven").status_code == 401
        view = httpx.get(f"{url}/customers/cust-sven", headers=agent).json()
        assert view["data"]["name"] == "Sven Berg"
        assert "Find a customer" in httpx.get(f"{url}/", headers=agent).text
    with journey(*common, "serve", "--port", "0", "--no-runner", cwd=tmp_path) as (_, url, _r):
        assert httpx.get(f"{url}/healthz").json()["runner"] == "disabled"
        assert httpx.get(f"{url}/customers/cust-sven", headers=agent).status_code == 200


def test_demo_serves_the_console(tmp_path: Path) -> None:
    with journey("demo", "--serve", "--port", "0", cwd=tmp_path) as (_, url, rest):
        assert (tmp_path / ".demo" / "views.db").exists()
        # The printed address signs in with a demo agent key carried in the fragment.
        path, _, fragment = rest.partition("#key=")
        assert path == "/console/sign-in" and fragment.startswith("jk_")
        assert httpx.get(f"{url}/console/customers/cust-erik").status_code == 401
        with httpx.Client(base_url=url) as browser:
            signed = browser.post(
                "/console/sign-in", json={"key": fragment}, headers={"Origin": url}
            )
            assert signed.status_code == 200, signed.text
            page = browser.get("/console/customers/cust-erik")
        assert page.status_code == 200 and "Erik Haugen" in page.text
