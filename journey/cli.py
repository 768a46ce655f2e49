"""The `journey` command. Logging is configured here and nowhere else."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import structlog
import typer

from domain.errors import JourneyError
from journey.logs import configure_logging
from journey.settings import ConfigError, Settings, redact

if TYPE_CHECKING:
    from consumers.log import Log
    from domain.envelope import Touchpoint
    from domain.rules import ServiceRules
    from journey.analytics.facts import Facts
    from journey.pipeline import Pipeline
    from journey.security.audit import Lookup
    from journey.security.keys import KeyStore
    from projections.store import JourneyStore

app = typer.Typer(
    help="Event-sourced customer-journey engine: touchpoints on a log, folded into CRM views.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class State:
    settings: Settings | None = None


def settings_() -> Settings:
    """The settings the global options and JOURNEY_* chose (read by the callback)."""
    if State.settings is None:
        State.settings = Settings.from_env()
    return State.settings


# Exit codes: 2 = the invocation, configuration or input is wrong (fix it and run again);
# 1 = the operation failed (broker or store unavailable, a step went wrong).
EXIT_USAGE = 2
EXIT_FAILED = 1


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print one line (secrets redacted, newlines folded) and return the Exit to raise."""
    one_line = " ".join(redact(message).split())
    typer.echo(f"error: {one_line}", err=True)
    return typer.Exit(code)


def _exit_code(exc: JourneyError) -> int:
    """1 when the log failed (try again later), 2 when what was asked is wrong (a damaged
    or foreign store included: its message names the remedy)."""
    from consumers.log import CommitRefused, LogUnavailable
    from projections.location import StoreUnreachable

    if isinstance(exc, LogUnavailable | CommitRefused | StoreUnreachable):
        return EXIT_FAILED
    return EXIT_USAGE


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
    except ConfigError as exc:  # names the option and its variable
        raise fail(str(exc)) from None
    configure_logging(settings_().log_format, settings_().log_level)
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

    from domain.bounds import Bounds
    from journey.emitter import Emitter, parse_batch
    from projections.keys import CustomerKeys

    settings = settings_()
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
        log = settings.open_log()
        # personal fields are sealed with the customers' keys, kept beside the store
        keys = CustomerKeys(settings.store_address())
        try:
            emitter = Emitter(
                log,
                topic=settings.topic,
                source="cli",
                partitions=settings.partitions,
                max_future=settings.max_future,
                keys=keys,
            )
            positions = emitter.emit_touchpoints(touchpoints)
        finally:
            keys.close()
            log.close()
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None
    for pos in positions:  # the token is what `?after=` takes to read this write
        typer.echo(json.dumps({**pos.as_dict(), "token": pos.token()}))


def _conflicting_duplicate(settings: Settings, touchpoints: Sequence[Touchpoint]) -> str | None:
    """Where the engine can tell (its store is here), an event_id already recorded with other
    content, or twice in the batch: a fact cannot change, so nothing is produced."""
    from projections.store import JourneyStore, active_store, find_conflicts, store_exists

    active = active_store(settings.store_address())
    if store_exists(active):
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
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what was written as one JSON line")
    ] = False,
) -> None:
    """Write the JSON Schema of the envelope and of every touchpoint type and version,
    and regenerate the per-type sections of docs/events.md."""
    from journey.schema import export_schemas, write_events_markdown

    try:
        written = export_schemas(out)
        changed = write_events_markdown(docs) if docs.exists() else None
    except JourneyError as exc:
        raise fail(str(exc), code=1) from None
    if as_json:
        docs_state = {None: "missing", True: "updated", False: "unchanged"}[changed]
        typer.echo(
            json.dumps(
                {"schemas": [str(p) for p in written], "docs": str(docs), "docs_state": docs_state}
            )
        )
        return
    typer.echo(f"wrote {len(written)} schemas to {out}")
    if changed is None:
        typer.echo(f"skipped {docs}: no such file", err=True)
    else:
        typer.echo(f"{'updated' if changed else 'unchanged'}: {docs}")


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
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the console with --serve")
    ] = 8000,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the view and lists as one JSON document")
    ] = False,
) -> None:
    """The main job: run the seed stories through the whole pipeline on the (embedded) log
    and show what an agent sees."""
    from journey.demo import DemoInUse, run_demo, say_holder

    if settings_().log_level == "info":
        # The demo prints views; per-event log lines would bury them. --log-level shows them.
        configure_logging("json" if settings_().log_format == "json" else "console", "warning")
    try:
        pipeline, lock = run_demo(settings_(), customer=customer, as_json=as_json)
        pipeline.close()
    except DemoInUse as exc:
        raise fail(str(exc)) from None
    except JourneyError as exc:
        raise fail(str(exc), code=1) from None
    try:
        if serve:
            settings = settings_().model_copy(
                update={"broker": pipeline.log.url, "store": f"sqlite:///{pipeline.runner.base}"}
            )
            pipeline.log.close()
            if lock is not None:  # held while serving: a second demo refuses, naming us
                say_holder(lock, f"pid {os.getpid()}, serving http://127.0.0.1:{port}/")
            _serve(
                settings,
                host="127.0.0.1",
                port=port,
                max_wait_ms=2000,
                runner=True,
                sign_in_key=_demo_key(settings),
            )
    finally:
        if lock is not None:
            lock.close()


def _pipeline() -> Pipeline:
    from journey.pipeline import Pipeline

    settings = settings_()
    log = settings.open_log()
    try:
        return Pipeline(
            log,
            settings.store_address(),
            topic=settings.topic,
            rules=load_rules(),
            partitions=settings.partitions,
            group=settings.group,
            max_future=settings.max_future,
            allowed_lateness=timedelta(seconds=settings.allowed_lateness),
            idle_timeout=timedelta(seconds=settings.idle_timeout),
            relay_intake=True,
        )
    except BaseException:
        log.close()  # the store did not open: no connection left behind
        raise


# While `journey run` waits for a store that does not answer yet, it says so this often.
_WAITING_LOG_EVERY_S = 60.0
_WAIT_MAX_S = 30.0


def _pipeline_when_the_store_answers() -> Pipeline | None:
    """The pipeline, once its store answers: a PostgreSQL store that is starting or away at
    the start is waited for (backoff up to 30 s, a log line a minute), as an outage after
    the start is. None when SIGTERM/SIGINT comes first. A store that answers but is damaged,
    foreign or outdated is an error at once."""
    import signal
    import threading
    import time

    from projections.location import StoreUnreachable

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log = structlog.get_logger("journey.run")
    delay, started, said = 0.5, time.monotonic(), -_WAITING_LOG_EVERY_S
    try:
        while not stop.is_set():
            try:
                pipeline = _pipeline()
            except StoreUnreachable as exc:
                now = time.monotonic()
                if now - said >= _WAITING_LOG_EVERY_S:
                    log.warning(
                        "store_unreachable_waiting",
                        error=str(exc),
                        waited_s=round(now - started),
                        retry_within_s=_WAIT_MAX_S,
                    )
                    said = now
                stop.wait(delay)
                delay = min(delay * 2, _WAIT_MAX_S)
                continue
            if said >= 0:
                log.info("store_answered", waited_s=round(time.monotonic() - started))
            return pipeline
        return None
    except KeyboardInterrupt:
        return None
    finally:
        signal.signal(signal.SIGTERM, previous)


def load_rules() -> ServiceRules:
    """Service rules: defaults, or the JSON file named by JOURNEY_RULES."""
    from domain.rules import ServiceRules

    path = settings_().rules
    if path is None:
        return ServiceRules()
    try:
        return ServiceRules.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"JOURNEY_RULES={path}: {exc.strerror}") from None
    except ValueError as exc:
        raise fail(f"JOURNEY_RULES={path} is not valid service rules: {exc}") from None


@app.command()
def run() -> None:
    """Run the projection runner and the promise keeper until SIGTERM/SIGINT."""
    try:
        pipeline = _pipeline_when_the_store_answers()
        if pipeline is None:
            return  # stopped while waiting for the store: nothing was read, nothing to commit
        try:
            pipeline.run()
        finally:
            pipeline.close()
    except JourneyError as exc:  # a damaged or foreign store: 2, the remedy in the message
        raise fail(str(exc), code=_exit_code(exc)) from None


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

    from consumers.rebuild import rebuild as do_rebuild
    from projections.location import describe

    if projection not in PROJECTIONS:
        raise fail(f"unknown projection {projection!r}: use one of {', '.join(PROJECTIONS)}")
    settings = settings_()
    try:
        # Rebuilding reads a log: a mistyped embedded path must not become a new empty one.
        log = settings.open_log(must_exist=True)
    except JourneyError as exc:
        raise fail(str(exc)) from None
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
                settings.store_address(),
                topic=settings.topic,
                dlq_topic=settings.dlq_topic,
                progress=report,
                max_future=settings.max_future,
                processes=settings.rebuild_processes,
            )
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None
    finally:
        log.close()
    rate = stats.processed / seconds if seconds else 0.0
    typer.echo(
        json.dumps(
            {
                "store": describe(new_file),  # a PostgreSQL password never printed
                "events": stats.processed,
                "applied": stats.applied,
                "duplicates": stats.duplicates,
                "dead_letters": stats.dead_letters,
                # personal values whose key is gone (erased customers; all of them: no keys)
                "sealed_values_without_key": stats.keyless,
                "seconds": round(seconds, 3),
                "events_per_second": round(rate, 1),
                "processes": len(stats.shares),
            }
        )
    )


@app.command("export")
def export_command(
    *,
    out: Annotated[
        Path,
        typer.Option(
            help="Where to write: a directory of part files (parquet), a DuckDB file "
            "(table touchpoints) or a CSV file; its end positions go to PATH.positions.json"
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", help="parquet, duckdb or csv")] = "parquet",
    since: Annotated[
        str | None,
        typer.Option(help="Only touchpoints that occurred at or after T (2026-11-01, or RFC 3339)"),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only touchpoints that occurred before T")
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only this touchpoint type (repeat it, or comma-separate)"),
    ] = None,
    customer: Annotated[
        str | None,
        typer.Option(help="Only this customer id and the ids merged with it"),
    ] = None,
    after_positions: Annotated[
        Path | None,
        typer.Option(
            "--after-positions",
            help="An earlier export's PATH.positions.json: append only what is new to --out",
        ),
    ] = None,
    with_personal_data: Annotated[
        bool,
        typer.Option(
            "--with-personal-data",
            help="Open personal fields with the store's key table (else they read "
            "(encrypted)); an erased customer's read (erased) either way",
        ),
    ] = False,
) -> None:
    """Export the log, one row per touchpoint, to Parquet, DuckDB or CSV (docs/export.md).

    Streams the log (memory stays flat) outside any consumer group, so a running engine is
    not disturbed. resolved_customer_id applies the identity merges the store knows;
    messages the engine dead-letters are skipped and counted. Prints a JSON summary.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from journey.analytics.export import FORMATS, export, parse_time, store_resolver
    from journey.security.audit import ALL_CUSTOMERS
    from projections.store import JourneyStore, active_store, describe, store_exists

    settings = settings_()
    if fmt not in FORMATS:
        raise fail(f"unknown --format {fmt!r}: use one of {', '.join(FORMATS)}")
    try:
        since_at = None if since is None else parse_time(since, "--since")
        until_at = None if until is None else parse_time(until, "--until")
        log = settings.open_log(must_exist=True)  # a mistyped path must not become a new log
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None
    wanted = [t.strip() for item in types or [] for t in item.split(",") if t.strip()]
    store = None
    keys = None
    active = active_store(settings.store_address())
    try:
        if with_personal_data:
            from projections.keys import CustomerKeys

            keys = CustomerKeys(settings.store_address())
        if store_exists(active):
            store = JourneyStore(active)
            note = how_far_behind(store, log, settings.topic)
            if note:
                typer.echo(f"{note}; identity merges it has not folded are not applied", err=True)
        else:
            typer.echo(
                f"note: no store at {describe(active)}, so resolved_customer_id is the "
                "customer_id as emitted (no identity merges applied); `journey rebuild` "
                "makes the store, or pass --store",
                err=True,
            )
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            "[progress.percentage]{task.percentage:>3.0f}%",
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        task = progress.add_task(f"exporting to {out}", total=None)

        def report(done: int, total: int) -> None:
            # Started by the first report: a refusal (out exists, ...) shows no empty bar.
            if not progress.live.is_started:
                progress.start()
            progress.update(task, completed=done, total=total or None)

        # Audited before anything is read, as the service audits its reads: one record for
        # the whole run (customer "*"), or the one customer asked for. No record, no export.
        _audit_cli_read(
            settings,
            log,
            customer or ALL_CUSTOMERS,
            lookup="id" if customer else "bulk",
            action="cli.export",
            route=f"journey export --format {fmt}"
            + (" --with-personal-data" if with_personal_data else ""),
        )
        try:
            result = export(
                log,
                out,
                format=fmt,  # checked against FORMATS above
                topic=settings.topic,
                since=since_at,
                until=until_at,
                types=wanted,
                customer=customer,
                after_positions=after_positions,
                resolve=None if store is None else store_resolver(store),
                resolved_with="none" if store is None else f"store {describe(active)}",
                progress=report,
                max_future=settings.max_future,
                keys=keys,
            )
        finally:
            if progress.live.is_started:
                progress.stop()
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None
    finally:
        log.close()
        if store is not None:
            store.close()
        if keys is not None:
            keys.close()
    typer.echo(json.dumps(result.as_dict()))


# Reading the log's head for a read-only command: it must answer soon or not at all.
_HEAD_TIMEOUT_S = 5.0


def _existing_store() -> JourneyStore:
    """The active store, opened only when it exists: commands that only read must not
    create a new, empty store out of a mistyped --store."""
    from projections.store import JourneyStore, active_store, describe, store_exists

    base = settings_().store_address()
    active = active_store(base)
    if not store_exists(active):
        raise fail(
            f"no store at {describe(active)}: check --store / JOURNEY_STORE "
            "(`journey run` or `journey rebuild` creates it)"
        )
    return JourneyStore(active)


def _open_log_to_read() -> Log:
    settings = settings_()
    try:
        return settings.open_log(must_exist=True, timeout_s=_HEAD_TIMEOUT_S)
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None


def how_far_behind(store: JourneyStore, log: Log, topic: str) -> str | None:
    """A one-line note when the store lags the log's head, else None.

    Read-only commands never fold themselves: joining the engine's consumer group would
    take partitions from the running `journey run`. They read the store and say how far
    behind it is, from the high-water marks (a group-less offset look-up) and the store's
    positions.
    """
    from consumers.log import TopicPartition

    try:
        heads = log.high_watermarks(topic)
    except JourneyError as exc:
        return (
            f"note: the log's head could not be read, so this may be behind: "
            f"{' '.join(redact(str(exc)).split())}"
        )
    positions = store.positions()
    behind = {
        p: hwm - (positions.get(TopicPartition(topic, p), -1) + 1)
        for p, hwm in sorted(heads.items())
    }
    lagging = {p: n for p, n in behind.items() if n > 0}
    if not lagging:
        return None
    total = sum(lagging.values())
    where = ", ".join(f"{topic}[{p}] {n}" for p, n in lagging.items())
    return (
        f"note: this store is {total} touchpoint(s) behind the log ({where}); "
        "a running `journey run` folds them (start one if none runs)"
    )


@app.command()
def view(
    key: Annotated[str, typer.Argument(help="Customer id, e-mail, phone, order or serial")],
    page: Annotated[int, typer.Option(min=1, help="Timeline page")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the view as JSON")] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The customer as of this event time (ISO 8601 with a zone): every touchpoint "
            "that happened by then, late reports included",
        ),
    ] = None,
    known_at: Annotated[
        str | None,
        typer.Option(
            "--known-at",
            help="What the engine knew at this log time (ISO 8601 with a zone): every "
            "touchpoint the log had received by then",
        ),
    ] = None,
) -> None:
    """Show one customer's view from the store; says on stderr how far behind the log it is.

    It only reads: the store that `journey run` (or `serve`) writes, and the log's head.
    With --as-of or --known-at it shows the customer back then, folded afresh from their
    touchpoints, deadlines judged at that moment.
    """
    from rich.console import Console

    from domain.bounds import parse_moment
    from journey.pipeline import system_clock
    from journey.render import render_customer
    from projections.customer_view import build_customer_view, lookup_customer, related_customers
    from projections.travel import Cut

    settings = settings_()
    rules = load_rules()
    cut: Cut | None = None
    if as_of is not None and known_at is not None:
        raise fail("give --as-of (event time) or --known-at (log time), not both")
    try:
        if as_of is not None:
            cut = Cut("as_of", parse_moment(as_of, now=system_clock(), name="--as-of"))
        elif known_at is not None:
            cut = Cut("known_at", parse_moment(known_at, now=system_clock(), name="--known-at"))
    except JourneyError as exc:
        raise fail(str(exc)) from None
    store = _existing_store()
    try:
        log = _open_log_to_read()
        try:
            note = how_far_behind(store, log, settings.topic)
            found = lookup_customer(store, key)  # a claim names candidates, not a view
            cid = found.customer_id
            if cid is not None:  # audited like the service's reads, before it is read
                # with the customers merged into the view: it shows theirs too
                merged = related_customers(store, cid)
                _audit_cli_read(settings, log, merged, lookup="id" if cid == key else "identity")
        finally:
            log.close()
        result = (
            None
            if cid is None
            else build_customer_view(
                store, cid, rules=rules, now=system_clock(), page=page, cut=cut
            )
        )
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None
    finally:
        store.close()
    if note:
        typer.echo(note, err=True)
    if result is None and cid is not None and cut is not None:
        raise fail(f"customer {cid!r} had no touchpoint {cut.describe()}", 1)
    if result is None and found.candidates:
        # Only claimed (a form, an unverified link): never someone's view on a guess.
        names = ", ".join(
            f"{m.customer_id} ({m.kind}, {'verified' if m.verified else 'unverified'})"
            for m in found.candidates
        )
        raise fail(
            f"{key!r} does not name one customer for sure; candidates: {names}. "
            "Ask by customer id, or confirm a link first",
            1,
        )
    if result is None:
        raise fail(f"no customer found for {key!r} (tried customer id and every identity)", 1)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        Console().print(render_customer(result))


def _audit_cli_read(
    settings: Settings,
    log: Log,
    customer_id: str | list[str],
    *,
    lookup: str,
    action: str = "cli.view",
    route: str = "journey view",
) -> None:
    """`journey view` reads the store directly (whoever may read its files may read every
    customer); it still leaves a record on the audit topic, naming the OS user."""
    import getpass

    from journey.security.audit import AuditTrail
    from journey.security.keys import Principal

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    trail = AuditTrail(log, settings.audit_topic, settings.partitions)
    trail.ensure_topic()
    trail.record(
        Principal(key_id="cli", name=f"cli:{user}", role="admin"),
        [customer_id] if isinstance(customer_id, str) else customer_id,
        action=action,
        route=route,
        lookup=_LOOKUPS.get(lookup, "id"),
    )


_LOOKUPS: dict[str, Lookup] = {"identity": "identity", "list": "list", "bulk": "bulk"}


@app.command("service-levels")
def service_levels(
    team: Annotated[str | None, typer.Option(help="Only this team")] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel")] = None,
    due_within_hours: Annotated[
        float, typer.Option(min=0, max=24 * 366, help="Horizon of 'due soon'")
    ] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Unanswered contacts by age, deadlines due soon, breaches, counts by team/channel.

    It only reads the store (and the log's head, to say how far behind the store is).
    """
    from rich.console import Console

    from journey.pipeline import system_clock
    from journey.render import render_service_levels
    from projections.service_levels import build_service_levels

    settings = settings_()
    rules = load_rules()
    store = _existing_store()
    try:
        _check_filter(store, team, channel)
        log = _open_log_to_read()
        try:
            note = how_far_behind(store, log, settings.topic)
            levels = build_service_levels(
                store,
                rules=rules,
                now=system_clock(),
                team=team,
                channel=channel,
                due_within_hours=due_within_hours,
            )
            # The lists name customers: audited as the service's work lists are.
            shown = [
                i.customer_id for i in (*levels.unanswered, *levels.due_soon, *levels.breached)
            ]
            _audit_cli_read(
                settings,
                log,
                shown,
                lookup="list",
                action="cli.service_levels",
                route="journey service-levels",
            )
        finally:
            log.close()
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None
    finally:
        store.close()
    if note:
        typer.echo(note, err=True)
    if as_json:
        typer.echo(levels.model_dump_json(indent=2))
    else:
        Console().print(render_service_levels(levels))


def _read_facts(settings: Settings, rules: ServiceRules, start: datetime, end: datetime) -> Facts:
    """Fold the log's facts of a period for `journey metrics` and `journey report`.

    Persons are resolved as the export resolves them (the identity merges the store knows),
    so a figure here and a query over an export count the same customers; a progress bar on
    stderr (stdout is the answer), as a long log takes a while.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from journey.analytics.export import store_resolver
    from journey.analytics.facts import read_log
    from projections.store import JourneyStore, active_store, store_exists

    log = settings.open_log(must_exist=True)
    store = None
    try:
        active = active_store(settings.store_address())
        if store_exists(active):
            store = JourneyStore(active)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task("reading the log", total=None)
            return read_log(
                log,
                settings.topic,
                start,
                end,
                business_hours=rules.business_hours,
                resolve=None if store is None else store_resolver(store),
                max_future=settings.max_future,
                progress=lambda done, total: bar.update(task, completed=done, total=total or None),
            )
    finally:
        log.close()
        if store is not None:
            store.close()


@app.command("metrics")
def metrics_command(
    since: Annotated[str, typer.Option(help="Start of the period: 2026-01-01 or RFC 3339")],
    until: Annotated[str, typer.Option(help="End of the period (exclusive)")],
    by: Annotated[
        str | None, typer.Option(help="Per group: week, month, channel, team or product")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Judge promise deadlines at this time (default: now)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Service metrics for a period: reply times, promises, effort, reopenings, reviews.

    Streams the log from the beginning (outside any consumer group; the engine is never
    disturbed) and folds it; no store is needed. Definitions: docs/metrics.md.
    """
    from rich.console import Console

    from journey import analytics
    from journey.analytics.table import render_metrics

    settings = settings_()
    rules = load_rules()
    try:
        if by is not None and by not in analytics.BY:
            raise JourneyError(f"unknown grouping {by!r}: use one of {', '.join(analytics.BY)}")
        start = analytics.parse_time(since, "--since")
        end = analytics.parse_time(until, "--until")
        judged = analytics.parse_time(as_of, "--as-of") if as_of else None
        if end <= start:
            raise JourneyError(
                f"--until ({end.isoformat()}) must be after --since ({start.isoformat()})"
            )
        facts = _read_facts(settings, rules, start, end)
        result = analytics.metrics(facts, by=by, as_of=judged)
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        Console().print(render_metrics(result))


@app.command("report")
def report_command(
    since: Annotated[str, typer.Option(help="Start of the period: 2026-01-01 or RFC 3339")],
    until: Annotated[str, typer.Option(help="End of the period (exclusive)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write")] = Path(
        "report.html"
    ),
    as_of: Annotated[
        str | None,
        typer.Option(help="Judge promise deadlines at this time (default: now)"),
    ] = None,
) -> None:
    """Write the service report of a period: one HTML file with charts and tables.

    Weekly trends, reply-time distributions, promises kept against broken, by team and by
    channel — the figures of `journey metrics`, read the same way. The file is
    self-contained (styles and SVG charts inline, no script, nothing loaded from the
    network): mail it, open it offline.
    """
    from datetime import UTC, datetime

    from journey import analytics
    from journey.report import render_report
    from journey.report.gather import MAX_WEEKS, gather

    settings = settings_()
    rules = load_rules()
    try:
        start = analytics.parse_time(since, "--since")
        end = analytics.parse_time(until, "--until")
        judged = analytics.parse_time(as_of, "--as-of") if as_of else datetime.now(UTC)
        if end <= start:
            raise JourneyError(
                f"--until ({end.isoformat()}) must be after --since ({start.isoformat()})"
            )
        if end - start > timedelta(weeks=MAX_WEEKS):
            raise JourneyError(
                f"a report covers at most {MAX_WEEKS} weeks (two years) of weekly charts: "
                "choose a shorter period with --since and --until"
            )
        if out.is_dir():
            raise JourneyError(f"--out {out} is a directory: name the HTML file to write")
        facts = _read_facts(settings, rules, start, end)
        data = gather(
            facts,
            start,
            end,
            as_of=judged,
            source_name=f"{redact(settings.broker)} {settings.topic}",
        )
        html = render_report(data, generated_at=datetime.now(UTC))
        partial = out.with_name(f".{out.name}.partial")
        try:
            partial.write_text(html, encoding="utf-8")
            partial.replace(out)  # never a half-written report under the name asked for
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise JourneyError(
                f"cannot write {out}: {exc.strerror}; choose another --out"
            ) from None
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None
    typer.echo(
        json.dumps(
            {
                "report": str(out),
                "since": data.since.isoformat(),
                "until": data.until.isoformat(),
                "touchpoints": data.touchpoints,
                "customers": data.overall.get("customers"),
                "bytes": len(html.encode()),
            }
        )
    )


def _check_filter(store: JourneyStore, team: str | None, channel: str | None) -> None:
    """A team or channel that does not exist is a typo, not an empty list: refuse it."""
    from projections.service_levels import unknown_filter

    problem = unknown_filter(store, team, channel)
    if problem:
        raise fail(problem[1])


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port")] = 8000,
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
    _serve(settings_(), host=host, port=port, max_wait_ms=max_wait_ms, runner=runner)


def _demo_key(settings: Settings) -> str:
    """A new agent key for the demo's console (the demo's store is replaced each run)."""
    import uuid

    from journey.security.keys import KeyStore

    store = KeyStore(settings.store_address())
    try:
        _, secret = store.create("agent", f"demo-agent-{uuid.uuid4().hex[:6]}")
    finally:
        store.close()
    return secret


def _say_if_no_keys(settings: Settings) -> None:
    from journey.security.keys import KeyStore

    try:
        store = KeyStore(settings.store_address())
    except JourneyError:
        return  # the store's own check below says what is wrong
    try:
        usable = [k for k in store.list() if k.revoked_at is None]
    finally:
        store.close()
    if not usable:
        typer.echo(
            "note: no keys yet, so every request but /healthz will be refused (401): "
            "create one with `journey keys create --role agent --name <who>`",
            err=True,
        )


def _serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    max_wait_ms: int,
    runner: bool,
    sign_in_key: str | None = None,
) -> None:
    from journey.service import ServiceOptions, create_app
    from journey.service.server import serve_forever

    def ready(url: str) -> None:
        if sign_in_key is not None:
            # The key rides in the fragment: browsers never send it, so it stays out of
            # server and proxy logs and Referer headers; the page removes it from the
            # address bar at once (journey/service/static/signin.js).
            typer.echo(
                f"Agent console (signs in with a demo agent key): "
                f"{url}/console/sign-in#key={sign_in_key}\n"
                f"API: {url}/docs   (Ctrl-C stops)"
            )
            return
        typer.echo(f"Agent console: {url}/   API: {url}/docs   (Ctrl-C stops)")

    rules = load_rules()
    if not runner:
        # --no-runner only reads what a `journey run` writes: both must be there already.
        _existing_store().close()
    if sign_in_key is None:
        _say_if_no_keys(settings)
    try:  # a broker that does not answer is said plainly, before anything starts
        log = settings.open_log(must_exist=not runner)
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None
    try:
        log.ensure_topics([settings.topic, settings.dlq_topic], settings.partitions)
    except JourneyError as exc:
        log.close()
        raise fail(str(exc), code=_exit_code(exc)) from None
    try:
        app_ = create_app(
            settings,
            ServiceOptions(max_wait_ms=max_wait_ms, run_pipeline=runner, group=settings.group),
            rules=rules,
            log=log,
        )
        serve_forever(app_, host, port, on_ready=ready)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}", code=EXIT_FAILED) from None
    finally:
        log.close()


# ---------------------------------------------------------------------- keys and audit

keys_app = typer.Typer(
    help="API keys of the query service: create (shown once), list, revoke.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


def _key_store(*, create: bool = False) -> KeyStore:
    from journey.security.keys import KeyStore

    try:
        return KeyStore(settings_().store_address(), create=create)
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="service, agent, analyst or admin")],
    name: Annotated[
        str | None, typer.Option(help="A name to know it by (default: role-<random>)")
    ] = None,
) -> None:
    """Create a key and print it — once: only its hash is kept. The key alone goes to
    stdout (`KEY=$(journey keys create --role agent)`), what it is to stderr."""
    from journey.security.keys import KeyError_

    store = _key_store(create=True)
    try:
        made, secret = store.create(role, name)
    except KeyError_ as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    typer.echo(secret)
    typer.echo(
        f"created key {made.name!r} (role {made.role}, id {made.id}) in {store.where}; "
        "it is shown only now: keep it secret",
        err=True,
    )


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Every key: name, role, when created and last used, whether revoked (never the key)."""
    store = _key_store()
    try:
        found = store.list()
    finally:
        store.close()
    if as_json:
        for key in found:
            typer.echo(json.dumps(key.as_dict()))
        return
    if not found:
        typer.echo("no keys yet: journey keys create --role agent --name <who>")
        return
    typer.echo(f"{'name':<24} {'role':<8} {'id':<12} {'created':<20} {'last used':<20} revoked")
    for key in found:
        typer.echo(
            f"{key.name:<24} {key.role:<8} {key.id:<12} {_minute(key.created_at):<20} "
            f"{_minute(key.last_used_at):<20} {_minute(key.revoked_at) if key.revoked_at else ''}"
        )


def _minute(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "—"


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's name or id")],
) -> None:
    """Revoke a key: refused at once by every service on this store, its console sessions
    end."""
    from journey.security.keys import KeyError_

    store = _key_store()
    try:
        done = store.revoke(key)
    except KeyError_ as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    typer.echo(f"revoked key {done.name!r} (role {done.role}, id {done.id})")


@app.command("audit")
def audit_command(
    customer: Annotated[str | None, typer.Option(help="Only reads of this customer id")] = None,
    key: Annotated[str | None, typer.Option(help="Only reads with this key (name or id)")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only reads at or after this time (RFC 3339, e.g. 2026-12-01T09:00Z)"),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=100_000, help="At most this many (newest)")
    ] = 1000,
) -> None:
    """Who read which customer, when: the audit topic (<topic>.audit), one JSON line per
    read, oldest first."""
    from datetime import datetime as _datetime

    from journey.security.audit import read_audit

    when = None
    if since is not None:
        try:
            when = _datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise fail(
                f"--since {since!r} is not an RFC 3339 time (e.g. 2026-12-01T09:00Z)"
            ) from None
        if when.tzinfo is None:
            raise fail(f"--since {since!r} names no time zone: add Z or +01:00")
    settings = settings_()
    if settings.log_level == "info":  # stdout is the records; the reader's chatter is noise
        configure_logging(settings.log_format, "warning")
    log = _open_log_to_read()
    try:
        records = read_audit(
            log, settings.audit_topic, customer=customer, key=key, since=when, limit=limit
        )
    except JourneyError as exc:
        raise fail(str(exc), code=_exit_code(exc)) from None
    finally:
        log.close()
    for record in records:
        typer.echo(record.model_dump_json())


def _debug_requested() -> bool:
    if State.settings is not None:
        return State.settings.log_level == "debug"
    argv = sys.argv[1:]
    return os.environ.get("JOURNEY_LOG_LEVEL", "").lower() == "debug" or any(
        a == "--log-level=debug" or (a == "--log-level" and nxt == "debug")
        for a, nxt in zip(argv, [*argv[1:], ""], strict=True)
    )


def main() -> None:
    """The console script: every error is one line on stderr (secrets redacted) with exit
    code 2 for a wrong invocation, configuration or input, 1 for a failed operation;
    tracebacks only with --log-level debug."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # typer's (vendored click's) usage errors
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            sys.exit(EXIT_USAGE)
        message = " ".join(redact(exc.format_message()).split())
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {message}{hint}", err=True)
        code = exc.exit_code
    except typer.Abort:
        typer.echo("error: interrupted", err=True)
        code = 130
    except JourneyError as exc:
        if _debug_requested():
            raise
        typer.echo(f"error: {' '.join(redact(str(exc)).split())}", err=True)
        code = _exit_code(exc)
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if _debug_requested():
            raise
        text = " ".join(redact(str(exc)).split()) or "(no message)"
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {text} "
            "(run again with --log-level debug for the traceback)",
            err=True,
        )
        code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else 0)
