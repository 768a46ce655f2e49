"""The main job: the seed stories through the whole pipeline, and what an agent sees."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from consumers import open_log
from journey.pipeline import ManualClock, Pipeline
from journey.render import render_customer, render_defects, render_service_levels
from journey.settings import DEFAULT_BROKER, Settings
from journey.stories import STORIES, all_touchpoints

__all__ = ["DEMO_DIR", "run_demo"]

DEMO_DIR = Path(".demo")


def run_demo(settings: Settings, customer: str = "cust-sven", fresh: bool = True) -> Pipeline:
    """Emit every story as time passes (the promise keeper recording each missed deadline
    on the way), fold them, print one customer's view and the service-level list.

    On the default embedded broker the demo works in ``.demo/`` (recreated each run) so it
    can be run again and again; with --broker/--store it uses those.
    """
    console = Console()
    broker, store = settings.broker, settings.store_path()
    if settings.broker == DEFAULT_BROKER:
        if fresh and DEMO_DIR.exists():
            shutil.rmtree(DEMO_DIR)
        DEMO_DIR.mkdir(exist_ok=True)
        broker, store = f"embedded://{DEMO_DIR / 'log.db'}", DEMO_DIR / "views.db"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    touchpoints = all_touchpoints(now)
    clock = ManualClock(touchpoints[0].occurred_at)
    log = open_log(broker)
    pipeline = Pipeline(
        log, store, topic=settings.topic, clock=clock, partitions=settings.partitions
    )
    with console.status(
        f"Playing {len(touchpoints)} touchpoints of {len(STORIES)} stories through {broker} …"
    ):
        pipeline.play(touchpoints, clock, now)
    stats = pipeline.runner.stats
    console.print(
        f"[bold]{stats.applied}[/] touchpoints folded ({len(touchpoints)} emitted, "
        f"{stats.applied - len(touchpoints)} derived by the promise keeper) · "
        f"log {broker} · store {store}\n"
    )
    view = pipeline.customer(customer)
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
    return pipeline
