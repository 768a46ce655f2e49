"""A Kafka broker of a test's own, which it may stop and start (outage tests).

The shared broker (JOURNEY_TEST_KAFKA) is never stopped: :class:`OwnBroker` runs
scripts/kafka.sh on another port with its own data directory (KAFKA_STATE_DIR) and stops it
by the pid in that directory. The ``broker`` fixture (tests/integration/conftest.py) gives
each test module one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kafka.sh"


def free_port_pair() -> int:
    """A port p with p and p+1 free (broker and controller)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two adjacent free ports")


def _jars() -> Path:
    """Broker jars already resolved by `make kafka` (this checkout's, or the main one's)."""
    for candidate in (ROOT / ".cache" / "kafka" / "libs", Path(os.environ.get("KAFKA_LIBS", ""))):
        if (candidate / ".pom").is_file():
            return candidate
    pytest.fail("no resolved Kafka jars: run `make kafka` once (or set KAFKA_LIBS)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnBroker:
    """``extra_env``: more scripts/kafka.sh settings, e.g. a SASL_SSL listener."""

    def __init__(self, state: Path, port: int, extra_env: dict[str, str] | None = None) -> None:
        self.port = port
        self.state = state
        self.address = f"127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "KAFKA_PORT": str(port),
            "KAFKA_STATE_DIR": str(state),
            "KAFKA_LIBS": str(_jars()),
            "KAFKA_HEAP": "384m",
            **(extra_env or {}),
        }

    def _script(self, command: str) -> None:
        done = subprocess.run(
            ["bash", str(SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        """Returns once the broker answers metadata requests."""
        self._script("start")

    def stop(self) -> None:
        """SIGTERM to the pid in its own pid file; waits until the process is gone."""
        self._script("stop")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    if shutil.which("java") is None:
        pytest.fail("java is needed to run a broker of the test's own")
    own = OwnBroker(tmp_path_factory.mktemp("kafka-own"), free_port_pair())
    own.start()
    try:
        yield own
    finally:
        own.stop()
