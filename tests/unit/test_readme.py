"""Every command in the README works as written, in order, on a fresh copy of the repository.

Before: the second quick-start line replayed .demo/ under the running console; the emit
example wrote to ./journey.db while the lines around it read the demo; `journey serve
--port 8000` collided with the demo already serving there; `journey emit --file
touchpoints.jsonl` named a file nobody has.

How the README's ```bash blocks are run, in one shell, in order (`set -e`):
* a fresh copy of the files git knows (tracked and new), with the project's installed
  `journey` behind `.venv/bin/journey` and the install stamps set, instead of `make install`
  (which would download a virtualenv);
* ports 8000 and 8001 are replaced by free ones (`DEMO_PORT` for `make demo`), since other
  programs on this machine may hold them;
* a command that serves (SERVES) runs in the background in its own process group; the next
  command runs only once the server answers /healthz;
* NOT_RUN lists the commands that are not run, each with its reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = Path(sys.executable).with_name("journey")

NOT_RUN = {
    "make test": "the test suite itself (it runs this test)",
    "make kafka": "starts a Kafka broker (Java, Maven); the integration tests cover it",
    "KAFKA_PORT=": "starts a Kafka broker on another port; the outage tests do this",
}
SERVES = ("make demo", ".venv/bin/journey serve", ".venv/bin/journey run")


def commands(readme: str) -> list[str]:
    """The commands of every ```bash block, in order: a command continues over lines while a
    line ends with a backslash or a single quote is still open."""
    out: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", readme, flags=re.M | re.S):
        pending = ""
        for line in block.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending += line + "\n"
            if not line.endswith("\\") and complete(pending):
                out.append(pending.rstrip("\n"))
                pending = ""
        assert not pending, f"unterminated command in the README: {pending!r}"
    return out


def complete(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:  # "No closing quotation": the command goes on on the next line
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_copy(into: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        names = [n for n in listed.stdout.decode().split("\0") if n]
    else:  # not a git checkout (an unpacked archive): everything but what a build leaves
        skip = {".git", ".venv", ".cache", ".demo", "artifacts", "__pycache__", ".mypy_cache"}
        names = [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
        ]
    for name in names:
        source = ROOT / name
        if source.is_file():  # a deleted but still tracked file is not in a fresh clone
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode)
    venv_bin = into / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    wrapper = venv_bin / "journey"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(str(JOURNEY))} "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    python = venv_bin / "python"  # the README reads an export with the venv's duckdb
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n', encoding="utf-8")
    python.chmod(0o755)
    # Newer than pyproject.toml: make takes the venv as installed.
    for stamp in (".installed-runtime", ".installed-dev"):
        (into / ".venv" / stamp).touch()


def script(cmds: list[str], ports: dict[str, str]) -> tuple[str, list[str]]:
    lines = ["set -euo pipefail", "set -x"]
    ran: list[str] = []
    for as_written in cmds:
        if any(as_written.startswith(prefix) for prefix in NOT_RUN):
            continue
        cmd = as_written
        for old, new in ports.items():
            cmd = cmd.replace(old, new)
        ran.append(cmd)
        if cmd.startswith(SERVES):
            port = re.search(r"--port (\d+)", cmd)
            # Its output to a file: an inherited pipe would keep the test waiting for EOF.
            # A watchdog in the server's own session ends the session when the test's
            # process is gone, even killed with SIGKILL mid-run (the cleanup below then
            # never runs, and this script dies of the broken pipe): no server outlives the
            # test. It stops within a second of the server. In the same `bash -c` as the
            # server, so no server ever runs without one.
            watched = (
                '(while kill -0 "$README_TEST_OWNER" 2>/dev/null && kill -0 $$ 2>/dev/null; '
                "do sleep 1; done; kill -TERM 0) & " + cmd
            )
            lines.append(f"setsid bash -c {shlex.quote(watched)} > server-{len(ran)}.log 2>&1 &")
            lines.append('server_pid="$!"; echo "$server_pid" >> background.pids')
            if port or cmd.startswith("make demo"):
                url = f"http://127.0.0.1:{port[1] if port else ports['8000']}/healthz"
                lines.append(
                    f"for _ in $(seq 600); do curl -s -o /dev/null {url} && break; "
                    'kill -0 "$server_pid" || { echo "server exited" >&2; exit 1; }; '
                    "sleep 0.1; done"
                )
                lines.append(f"curl -s -o /dev/null {url}")
        else:
            lines.append(cmd)
    return "\n".join(lines) + "\n", ran


def test_the_readme_commands_work_as_written_in_order(tmp_path: Path) -> None:
    cmds = commands((ROOT / "README.md").read_text(encoding="utf-8"))
    ports = {"8000": str(free_port()), "8001": str(free_port())}
    text, ran = script(cmds, ports)
    assert any(c.startswith("make demo") for c in ran)
    assert len(ran) >= 12, ran  # the rule above must not quietly skip the README
    fresh_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    env["DEMO_PORT"] = ports["8000"]
    env["README_TEST_OWNER"] = str(os.getpid())
    env["PYTHONPATH"] = str(tmp_path)  # the copy's code, as a clone would run it
    (tmp_path / "readme.sh").write_text(text, encoding="utf-8")
    try:
        done = subprocess.run(
            ["bash", "readme.sh"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        pids = tmp_path / "background.pids"
        died = []
        for pid in pids.read_text().split() if pids.exists() else []:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:  # it stopped by itself: it refused or failed
                died.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGTERM)  # the group setsid made for that server
    assert done.returncode == 0, done.stderr[-6000:]
    logs = {p.name: p.read_text() for p in tmp_path.glob("server-*.log")}
    assert not died, logs  # every server the README starts serves until stopped
    # The emitted touchpoints reached the demo's view through the serving demo.
    assert "Where is my order?" in done.stdout
    assert '"customer_id":"cust-erik"' in done.stdout.replace(" ", "")
