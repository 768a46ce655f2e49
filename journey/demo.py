"""The main job: the seed stories through the whole pipeline, and what an agent sees."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from rich.console import Console

from consumers import open_log
from domain.errors import JourneyError
from journey.pipeline import ManualClock, Pipeline
from journey.render import render_customer, render_defects, render_service_levels
from journey.settings import DEFAULT_BROKER, Settings
from journey.stories import STORIES, all_touchpoints

__all__ = ["DEMO_DIR", "DemoInUse", "claim_demo_dir", "run_demo"]

DEMO_DIR = Path(".demo")
_LOCK = "lock"


class DemoInUse(JourneyError):
    """Another demo (usually one serving the console) holds the demo directory."""


def claim_demo_dir(directory: Path = DEMO_DIR) -> TextIO:
    """Lock ``directory`` for this process (flock on ``<directory>/lock``) or refuse.

    The returned handle holds the lock until it is closed or the process ends, however it
    ends (the kernel releases a flock with its last descriptor): a demo that serves keeps it
    while serving, so a second `journey demo` cannot replay the log and store under it —
    the server would go on answering from files no longer on disk, marked fresh. The file
    says who holds it, for the refusal.
    """
    directory.mkdir(exist_ok=True)
    handle = (directory / _LOCK).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DemoInUse(
            f"{directory}/ is in use by a running demo ({holder}), and playing the demo "
            "again would replace its data: stop that demo first (Ctrl-C in its terminal), "
            f"or read its data: journey --broker embedded://{directory}/log.db "
            f"--store sqlite:///{directory}/views.db view <customer>"
        ) from None
    say_holder(handle, f"pid {os.getpid()}")
    return handle


def say_holder(handle: TextIO, who: str) -> None:
    """Record who holds the lock (the refusal quotes it)."""
    handle.seek(0)
    handle.truncate()
    handle.write(who)
    handle.flush()


def _empty(directory: Path) -> None:
    """Remove what a previous demo left, except the lock this process holds."""
    for entry in directory.iterdir():
        if entry.name == _LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _in_demo_dir(settings: Settings) -> bool:
    demo = DEMO_DIR.resolve()
    paths = [settings.store_path()]
    if settings.broker.startswith("embedded://"):
        paths.append(Path(settings.broker.removeprefix("embedded://")))
    return any(p.resolve().parent == demo for p in paths)


def run_demo(
    settings: Settings, customer: str = "cust-sven", fresh: bool = True, as_json: bool = False
) -> tuple[Pipeline, TextIO | None]:
    """Emit every story as time passes (the promise keeper recording each missed deadline
    on the way), fold them, print one customer's view and the service-level list — as rich
    tables, or with ``as_json`` as one JSON document.

    On the default embedded broker the demo works in ``.demo/`` (emptied each run) so it
    can be run again and again — but never while another demo holds it (:class:`DemoInUse`);
    the second value is the held lock, to keep while serving. With --broker/--store it uses
    those, and there is no lock.
    """
    console = Console()
    broker, store = settings.broker, settings.store_path()
    lock: TextIO | None = None
    if settings.broker == DEFAULT_BROKER:
        lock = claim_demo_dir(DEMO_DIR)
        if fresh:
            _empty(DEMO_DIR)
        broker, store = f"embedded://{DEMO_DIR / 'log.db'}", DEMO_DIR / "views.db"
    elif _in_demo_dir(settings):
        # Named explicitly (JOURNEY_BROKER=embedded://.demo/log.db, as the README exports
        # to read the demo): playing into it would still add to a served log. Not emptied.
        lock = claim_demo_dir(DEMO_DIR)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    touchpoints = all_touchpoints(now)
    clock = ManualClock(touchpoints[0].occurred_at)
    log = open_log(broker)
    pipeline = Pipeline(
        log,
        store,
        topic=settings.topic,
        clock=clock,
        partitions=settings.partitions,
        cache_size=settings.cache_size,
        cache_weight=settings.cache_weight,
    )
    with console.status(
        f"Playing {len(touchpoints)} touchpoints of {len(STORIES)} stories through {broker} …"
    ):
        pipeline.play(touchpoints, clock, now)
    stats = pipeline.runner.stats
    view = pipeline.customer(customer)
    if as_json:
        print(
            json.dumps(
                {
                    "log": broker,
                    "store": f"sqlite:///{store}",
                    "emitted": len(touchpoints),
                    "folded": stats.applied,
                    "customer": None if view is None else view.model_dump(mode="json"),
                    "service_levels": pipeline.service_levels().model_dump(mode="json"),
                    "defects": [d.model_dump(mode="json") for d in pipeline.defects()],
                    "stories": {s.focus: s.title for s in STORIES.values()},
                },
                indent=2,
            )
        )
        return pipeline, lock
    console.print(
        f"[bold]{stats.applied}[/] touchpoints folded ({len(touchpoints)} emitted, "
        f"{stats.applied - len(touchpoints)} derived by the promise keeper) · "
        f"log {broker} · store {store}\n"
    )
    if view is None:
        console.print(f"[red]no customer {customer!r} in the demo data[/]")
    else:
        console.print(render_customer(view))
    console.print(render_service_levels(pipeline.service_levels()))
    console.print(render_defects(pipeline.defects()))
    console.print(
        "\nOther customers: "
        + ", ".join(f"{s.focus} ({s.title})" for s in STORIES.values())
        + f"\nShow one: .venv/bin/journey --broker {broker} --store sqlite:///{store} "
        "view <customer id, e-mail, phone, order or serial>"
    )
    return pipeline, lock
