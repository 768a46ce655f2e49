"""The `journey` command. Logging is configured here and nowhere else."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import structlog
import typer

from domain.errors import JourneyError
from journey.logs import configure_logging
from journey.settings import Settings

if TYPE_CHECKING:
    from domain.envelope import Touchpoint
    from domain.rules import ServiceRules
    from journey.pipeline import Pipeline

app = typer.Typer(
    help="Event-sourced customer-journey engine: touchpoints on a log, folded into CRM views.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class State:
    settings: Settings = Settings()


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.callback()
def main_options(
    broker: Annotated[
        str | None,
        typer.Option(
            help="kafka://host:port[,host:port] or embedded:///path.db "
            "[env JOURNEY_BROKER; default embedded://journey.db]",
        ),
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Log of record topic [JOURNEY_TOPIC]")] = None,
    store: Annotated[str | None, typer.Option(help="Projection store URL [JOURNEY_STORE]")] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="console or json [JOURNEY_LOG_FORMAT]")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
) -> None:
    try:
        State.settings = Settings.from_env(
            broker=broker, topic=topic, store=store, log_format=log_format, log_level=log_level
        )
    except Exception as exc:  # pydantic's message names the field
        raise fail(f"bad configuration: {exc}") from None
    fmt: Literal["console", "json"] = "json" if State.settings.log_format == "json" else "console"
    configure_logging(fmt, State.settings.log_level)
    structlog.get_logger("journey").debug("settings", **State.settings.safe_dict())


@app.command()
def emit(
    envelope: Annotated[
        str | None, typer.Argument(help="One JSON envelope; omit to read --file or stdin")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="File of JSON lines (or '-' for stdin)")
    ] = None,
) -> None:
    """Validate touchpoints, then produce them; print each position as a JSON line.

    Input: one envelope as argument, or JSON lines (or a JSON array) from --file or stdin.
    If any line is invalid nothing is produced and the exit code is 2.
    """
    from datetime import UTC, datetime

    from consumers import open_log
    from domain.bounds import Bounds
    from journey.emitter import Emitter, parse_batch

    settings = State.settings
    if envelope is not None:
        text, origin = envelope, "argument"
    elif file is not None and str(file) != "-":
        try:
            text, origin = file.read_text(encoding="utf-8"), str(file)
        except OSError as exc:
            raise fail(f"cannot read {file}: {exc.strerror}") from None
    else:
        text, origin = sys.stdin.read(), "stdin"
    try:
        bounds = Bounds(now=datetime.now(UTC), max_future=settings.max_future)
        touchpoints = parse_batch(text, origin, bounds)
    except JourneyError as exc:
        raise fail(str(exc)) from None
    conflict = _conflicting_duplicate(settings, touchpoints)
    if conflict:
        raise fail(conflict)
    try:
        log = open_log(settings.broker)
        try:
            emitter = Emitter(
                log,
                topic=settings.topic,
                source="cli",
                partitions=settings.partitions,
                max_future=settings.max_future,
            )
            positions = emitter.emit_touchpoints(touchpoints)
        finally:
            log.close()
    except JourneyError as exc:
        raise fail(str(exc), code=1) from None
    for pos in positions:
        typer.echo(json.dumps(pos.as_dict()))


def _conflicting_duplicate(settings: Settings, touchpoints: Sequence[Touchpoint]) -> str | None:
    """Where the engine can tell (its store is here), an event_id already recorded with other
    content, or twice in the batch: a fact cannot change, so nothing is produced."""
    from projections.store import JourneyStore, active_store_path, find_conflicts

    active = active_store_path(settings.store_path())
    if active.exists():
        store = JourneyStore(active, check_pages=False)
        try:
            found = store.conflicts(touchpoints)
        finally:
            store.close()
    else:
        found = find_conflicts(touchpoints)
    if not found:
        return None
    event_id, recorded, sent = found[0]
    return (
        f"event_id {event_id} is already recorded with other content ({recorded}; this one "
        f"is {sent}): a fact cannot change, send a new event_id (conflicting_duplicate); "
        "nothing was produced"
    )


@app.command()
def schema(
    out: Annotated[Path, typer.Option(help="Directory to write the JSON Schemas into")] = Path(
        "docs/schema"
    ),
    docs: Annotated[
        Path,
        typer.Option(
            help="Markdown file whose part between the GENERATED markers is regenerated "
            "(skipped when the file does not exist)"
        ),
    ] = Path("docs/events.md"),
) -> None:
    """Write the JSON Schema of the envelope and of every touchpoint type and version,
    and regenerate the per-type sections of docs/events.md."""
    from journey.schema import export_schemas, write_events_markdown

    try:
        written = export_schemas(out)
        typer.echo(f"wrote {len(written)} schemas to {out}")
        if docs.exists():
            changed = write_events_markdown(docs)
            typer.echo(f"{'updated' if changed else 'unchanged'}: {docs}")
        else:
            typer.echo(f"skipped {docs}: no such file", err=True)
    except JourneyError as exc:
        raise fail(str(exc), code=1) from None


@app.command()
def demo(
    customer: Annotated[
        str, typer.Option(help="Whose view to show (id, e-mail, phone, order or serial)")
    ] = "cust-sven",
    serve: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve",
            help="Then serve the agent console and API on the demo data until Ctrl-C",
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the console with --serve")] = 8000,
) -> None:
    """The main job: run the seed stories through the whole pipeline on the (embedded) log
    and show what an agent sees."""
    from journey.demo import run_demo

    if State.settings.log_level == "info":
        # The demo prints views; per-event log lines would bury them. --log-level shows them.
        configure_logging("json" if State.settings.log_format == "json" else "console", "warning")
    try:
        pipeline = run_demo(State.settings, customer=customer)
        pipeline.close()
    except JourneyError as exc:
        raise fail(str(exc), code=1) from None
    if serve:
        settings = State.settings.model_copy(
            update={"broker": pipeline.log.url, "store": f"sqlite:///{pipeline.runner.base}"}
        )
        pipeline.log.close()
        _serve(settings, host="127.0.0.1", port=port, max_wait_ms=2000, runner=True)


def _pipeline() -> Pipeline:
    from consumers import open_log
    from journey.pipeline import Pipeline

    settings = State.settings
    return Pipeline(
        open_log(settings.broker),
        settings.store_path(),
        topic=settings.topic,
        rules=load_rules(),
        partitions=settings.partitions,
        max_future=settings.max_future,
        allowed_lateness=timedelta(seconds=settings.allowed_lateness),
        idle_timeout=timedelta(seconds=settings.idle_timeout),
    )


def load_rules() -> ServiceRules:
    """Service rules: defaults, or the JSON file named by JOURNEY_RULES."""
    import os

    from domain.rules import ServiceRules

    path = os.environ.get("JOURNEY_RULES")
    if not path:
        return ServiceRules()
    try:
        return ServiceRules.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"JOURNEY_RULES={path}: {exc.strerror}") from None
    except ValueError as exc:
        raise fail(f"JOURNEY_RULES={path} is not valid service rules: {exc}") from None


@app.command()
def run() -> None:
    """Run the projection runner and the promise keeper until SIGTERM/SIGINT."""
    from projections.integrity import StoreError

    try:
        pipeline = _pipeline()
        try:
            pipeline.run()
        finally:
            pipeline.close()
    except StoreError as exc:  # a damaged or foreign store: the remedy is in the message
        raise fail(str(exc)) from None
    except JourneyError as exc:
        raise fail(str(exc), code=1) from None


PROJECTIONS = ("all", "customer-view", "service-levels", "defect-outreach")


@app.command()
def rebuild(
    projection: Annotated[
        str, typer.Argument(help="customer-view, service-levels, defect-outreach or all")
    ] = "all",
) -> None:
    """Replay the log from the beginning into a fresh store, then swap it in atomically.

    The three projections share one store (one fold feeds them all), so rebuilding one
    rebuilds all; queries and a running `journey run` keep working during the rebuild.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from consumers import open_log
    from consumers.rebuild import rebuild as do_rebuild

    if projection not in PROJECTIONS:
        raise fail(f"unknown projection {projection!r}: use one of {', '.join(PROJECTIONS)}")
    settings = State.settings
    log = open_log(settings.broker)
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            "[progress.percentage]{task.percentage:>3.0f}%",
            TimeRemainingColumn(),
            transient=False,
        ) as progress:
            task = progress.add_task(f"rebuilding {projection}", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total or None)

            new_file, stats, seconds = do_rebuild(
                log,
                settings.store_path(),
                topic=settings.topic,
                dlq_topic=settings.dlq_topic,
                progress=report,
                max_future=settings.max_future,
            )
    except JourneyError as exc:
        raise fail(str(exc), code=1) from None
    finally:
        log.close()
    rate = stats.processed / seconds if seconds else 0.0
    typer.echo(
        json.dumps(
            {
                "store": str(new_file),
                "events": stats.processed,
                "applied": stats.applied,
                "duplicates": stats.duplicates,
                "dead_letters": stats.dead_letters,
                "seconds": round(seconds, 3),
                "events_per_second": round(rate, 1),
            }
        )
    )


@app.command()
def view(
    key: Annotated[str, typer.Argument(help="Customer id, e-mail, phone, order or serial")],
    page: Annotated[int, typer.Option(min=1, help="Timeline page")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the view as JSON")] = False,
) -> None:
    """Show one customer's view (catches up with the log first)."""
    from rich.console import Console

    from journey.render import render_customer

    pipeline = _pipeline()
    try:
        pipeline.runner.run_until_caught_up(60)
        result = pipeline.customer(key, page=page)
    except JourneyError as exc:
        raise fail(str(exc), code=1) from None
    finally:
        pipeline.close()
    if result is None:
        raise fail(f"no customer found for {key!r} (tried customer id and every identity)", 1)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        Console().print(render_customer(result))


@app.command("service-levels")
def service_levels(
    team: Annotated[str | None, typer.Option(help="Only this team")] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel")] = None,
    due_within_hours: Annotated[float, typer.Option(help="Horizon of 'due soon'")] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Unanswered contacts by age, deadlines due soon, breaches, counts by team/channel."""
    from rich.console import Console

    from journey.render import render_service_levels

    pipeline = _pipeline()
    try:
        pipeline.runner.run_until_caught_up(60)
        levels = pipeline.service_levels(
            team=team, channel=channel, due_within_hours=due_within_hours
        )
    finally:
        pipeline.close()
    if as_json:
        typer.echo(levels.model_dump_json(indent=2))
    else:
        Console().print(render_service_levels(levels))


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_wait_ms: Annotated[
        int,
        typer.Option(
            min=0,
            help="Bound of every freshness wait; when hit the answer is 503 with the lag "
            "(or 200 fresh:false when the client passes stale=true)",
        ),
    ] = 2000,
    runner: Annotated[
        bool,
        typer.Option(
            "--runner/--no-runner",
            help="Run the projection runner and promise keeper in this process; "
            "--no-runner only reads a store that a `journey run` writes",
        ),
    ] = True,
) -> None:
    """Serve the agents' query service (HTTP API, OpenAPI at /docs) and console (/)."""
    _serve(State.settings, host=host, port=port, max_wait_ms=max_wait_ms, runner=runner)


def _serve(settings: Settings, *, host: str, port: int, max_wait_ms: int, runner: bool) -> None:
    from consumers import open_log
    from journey.service import ServiceOptions, create_app
    from journey.service.server import serve_forever

    def ready(url: str) -> None:
        typer.echo(f"Agent console: {url}/   API: {url}/docs   (Ctrl-C stops)")

    rules = load_rules()
    try:  # a broker that does not answer is said plainly, before anything starts
        log = open_log(settings.broker)
        log.ensure_topics([settings.topic, settings.dlq_topic], settings.partitions)
    except JourneyError as exc:
        raise fail(str(exc), code=1) from None
    try:
        app_ = create_app(
            settings,
            ServiceOptions(max_wait_ms=max_wait_ms, run_pipeline=runner),
            rules=rules,
            log=log,
        )
        serve_forever(app_, host, port, on_ready=ready)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}", code=1) from None
    finally:
        log.close()


def main() -> None:
    app()
