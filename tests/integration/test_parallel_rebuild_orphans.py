"""A rebuild on several processes whose own process is killed (SIGKILL: no finally runs)
takes its folding processes with it: left running, they went on writing a store nobody
would swap in, for as long as their share took (a 1M rebuild: minutes of both cores)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from consumers.log import Log
from journey.pipeline import Pipeline
from journey.synthetic import generate_touchpoints
from tests.integration.test_exactly_once import quiet_logs  # noqa: F401  (autouse)
from tests.integration.test_parallel_rebuild import NOW

_REBUILD = """
import sys
from pathlib import Path
from consumers.embedded_log import EmbeddedLog
from consumers.rebuild import rebuild
import multiprocessing

def said(done, total):
    if len(multiprocessing.active_children()) == 2 and done:
        pids = " ".join(str(p.pid) for p in multiprocessing.active_children())
        print("children", pids, flush=True)

directory, topic = Path(sys.argv[1]), sys.argv[2]
log = EmbeddedLog(str(directory / "log.db"))
# Three: the rebuild's own process folds one share, two forked ones the others.
rebuild(log, directory / "views.db", topic=topic, dlq_topic=topic + ".dlq", processes=3,
        batch_size=20, progress=said)
"""


def _going_on(pid: int) -> bool:
    """Alive, and no SIGKILL on its way to it (a kill the kernel sent as its parent died
    is pending or done by the time the parent is reaped: no waiting needed)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if fields["State"].split()[0] in {"Z", "X"}:
        return False
    pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
    return not pending & (1 << (signal.SIGKILL - 1))


def test_the_rebuilds_processes_die_with_it(
    embedded_log: Log, tmp_path: Path, unique_topic: str
) -> None:
    pipeline = Pipeline(embedded_log, tmp_path / "views.db", topic=unique_topic)
    try:
        pipeline.emit(generate_touchpoints(100, 30, seed=5, start=NOW - timedelta(days=3)))
        pipeline.catch_up()
    finally:
        pipeline.close()
    env = {**os.environ, "JOURNEY_CHAOS_FOLD_DELAY_MS": "20"}  # slow: still folding when killed
    rebuild = subprocess.Popen(
        [sys.executable, "-c", _REBUILD, str(tmp_path), unique_topic],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert rebuild.stdout is not None
    children: list[int] = []
    for line in rebuild.stdout:
        if line.startswith("children "):
            children = [int(p) for p in line.split()[1:]]
            break
    assert len(children) == 2, "the rebuild ended before its processes were seen"
    rebuild.send_signal(signal.SIGKILL)
    rebuild.wait()
    still = [pid for pid in children if _going_on(pid)]
    for pid in children:  # never leave them behind the test
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert still == [], "the rebuild's processes outlived it"
