"""The `journey` command. Logging is configured here and nowhere else."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import structlog
import typer

from domain.errors import JourneyError
from journey.logs import configure_logging
from journey.settings import Settings

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
    store: Annotated[
        str | None, typer.Option(help="Projection store URL [JOURNEY_STORE]")
    ] = None,
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
    from consumers import open_log
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
        touchpoints = parse_batch(text, origin)
    except JourneyError as exc:
        raise fail(str(exc)) from None
    try:
        log = open_log(settings.broker)
        try:
            emitter = Emitter(log, topic=settings.topic, source="cli", partitions=settings.partitions)
            positions = emitter.emit_touchpoints(touchpoints)
        finally:
            log.close()
    except JourneyError as exc:
        raise fail(str(exc), code=1) from None
    for pos in positions:
        typer.echo(json.dumps(pos.as_dict()))


@app.command()
def schema(
    out: Annotated[Path, typer.Option(help="Directory to write the JSON Schemas into")] = Path(
        "docs/schema"
    ),
) -> None:
    """Write the JSON Schema of the envelope and of every touchpoint type and version."""
    from journey.schema import export_schemas

    written = export_schemas(out)
    typer.echo(f"wrote {len(written)} schemas to {out}")


@app.command()
def demo() -> None:
    """The main job: run the seed stories on the (embedded) log and show what an agent sees."""
    from journey.demo import run_demo

    try:
        run_demo(State.settings)
    except JourneyError as exc:
        raise fail(str(exc), code=1) from None


def main() -> None:
    app()
