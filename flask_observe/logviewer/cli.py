"""``flask observe logs search|tail``: the log viewer from a shell, with the API's filters.

Reads the same files as the HTTP viewer (``OBSERVE_LOG_DIR`` or ``OBSERVE_LOGVIEWER_DIR``,
active and rotated, gzipped too) with the same redaction. There is no HTTP auth here —
whoever runs ``flask`` can read the files anyway — and no time budget: pages follow each
other until ``--limit`` lines are printed or the files end.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click
import orjson
from flask.cli import with_appcontext

from .._internal import escape_control
from .._optional import MissingDependencyError
from . import follow as live
from .match import Matcher
from .query import QueryError, query_args
from .search import Limits
from .store import BadName, NoSuchFile
from .viewer import LogViewer

__all__ = ["logs"]

_JSON_UNSAFE = re.compile(r"[\x7f-\x9f]")
#: The CLI scans without a time budget (a page per minute at most) and pages for itself.
_CLI_LIMITS = Limits(
    max_results=1_000_000, max_response_bytes=1 << 62, time_budget=60.0, max_pattern_length=4096
)


def _viewer() -> LogViewer:
    from ..cli import feature_off
    from ..logging.settings import LoggingSettings
    from ..state import current_state
    from .settings import LogViewerSettings

    config = current_state().config
    assert isinstance(config, LogViewerSettings)
    assert isinstance(config, LoggingSettings)
    if not (config.logviewer_dir or config.log_dir):
        raise feature_off("reading the logs", "no log files (set OBSERVE_LOG_DIR)")
    viewer = LogViewer.from_config(config, config)
    viewer.limits = _CLI_LIMITS
    return viewer


def _filters(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--text", help="Substring of the line (as written, JSON-escaped)."),
        click.option("--regex", help="RE2 regular expression searched in the line."),
        click.option("--ignore-case", "-i", is_flag=True, help="Text and regex ignore case."),
        click.option("--level", help="Minimum level: debug, info, warning, error, critical."),
        click.option("--levels", help="Exactly these levels, comma-separated."),
        click.option("--since", help="ISO 8601 time or relative (30s, 15m, 2h, 1d)."),
        click.option("--until", help="ISO 8601 time or relative (exclusive)."),
        click.option("--correlation-id", "-c", help="Lines of one request or task."),
        click.option("--trace-id", help="Lines of one trace."),
        click.option("--field", "-F", multiple=True, help="key=value on JSON fields (repeat)."),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["json", "short"]),
            default="json",
            show_default=True,
            help="json: one JSON line per match (raw lines as text); short: time level logger"
            " message.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _print(item: dict[str, Any], fmt: str) -> None:
    """One result on one line. What came from the logs is written with its control
    characters escaped: a logged path's ANSI sequence or CR/LF must not drive the terminal or
    forge a line (click strips ANSI only when the output is not a terminal)."""
    record = item.get("record")
    if record is None:
        click.echo(escape_control(item.get("raw", "")))
    elif fmt == "json":
        # JSON escapes C0 controls already; DEL and C1 get \u escapes too.
        text = orjson.dumps(record).decode()
        click.echo(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", text))
    else:
        cid = record.get("correlation_id")
        click.echo(
            escape_control(
                f"{record.get('timestamp', '')} {str(record.get('level', '')).upper():8} "
                f"{record.get('logger', '')}: {record.get('message', '')}"
                + (f"  [{cid}]" if cid else "")
            )
        )


def _args(values: dict[str, Any]) -> dict[str, list[str]]:
    values = dict(values)
    values["field"] = values.pop("field", ())
    return query_args(values)


@click.group("logs")
def logs() -> None:
    """Search and tail the log files (the log viewer's filters)."""


@logs.command("search")
@_filters
@click.option("--file", "file_name", help="One file (default: all, rotated and gzipped too).")
@click.option("--limit", "-n", type=click.IntRange(1), default=100, show_default=True)
@click.option(
    "--order", type=click.Choice(["newest", "oldest"]), default="newest", show_default=True
)
@with_appcontext
def search_command(fmt: str, file_name: str | None, limit: int, **filters: Any) -> None:
    """Print the lines matching every filter given."""
    viewer = _viewer()
    args = _args(filters)
    if file_name:
        args["file"] = [file_name]
    try:
        query = viewer.parse(args, default_limit=limit)
        printed = 0
        while printed < limit:
            query = replace(query, limit=limit - printed)
            page = viewer.search(query)
            for item in page.results:
                _print(item, fmt)
            printed += len(page.results)
            for error in page.errors:
                click.echo(f"skipped {error['file']}: {error['error']}", err=True)
            if page.cursor is None:
                break
            query = viewer.parse({**args, "cursor": [page.cursor]}, default_limit=limit)
    except (QueryError, BadName, NoSuchFile) as exc:
        raise click.UsageError(_message(exc)) from None
    except MissingDependencyError as exc:  # --regex or -i without the logviewer extra
        raise click.ClickException(str(exc)) from None


@logs.command("tail")
@_filters
@click.argument("file_name", required=False)
@click.option("--lines", "-n", type=click.IntRange(0), default=10, show_default=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C ends).")
@with_appcontext
def tail_command(fmt: str, file_name: str | None, lines: int, follow: bool, **filters: Any) -> None:
    """Print the last lines of FILE (default: the active log file); -f follows it."""
    viewer = _viewer()
    name = file_name or viewer.store.streams[0]
    try:
        page, query, start = viewer.tail(name, _args(filters), lines)
        if follow and not viewer.store.resolve(name).active:
            raise QueryError("--follow: only an active file grows")
    except (QueryError, BadName, NoSuchFile) as exc:
        raise click.UsageError(_message(exc)) from None
    except MissingDependencyError as exc:
        raise click.ClickException(str(exc)) from None
    for item in page.results:
        _print(item, fmt)
    if not follow:
        return
    stop = threading.Event()
    events = live.follow(
        viewer.store,
        name,
        Matcher(query, viewer.redactor),
        start,
        stop=stop,
        deadline=float("inf"),
        clock=viewer.clock,
        heartbeat=3600.0,
        max_line_bytes=viewer.limits.max_line_bytes,
    )
    try:
        for kind, payload, _ in events:
            if kind == "line":
                _print(payload, fmt)
            elif kind in ("rotated", "truncated"):
                click.echo(f"--- {name} was {kind}; following the new file ---", err=True)
            elif kind == "gap":
                lost = f"{payload['bytes']} bytes" if payload["bytes"] is not None else "lines"
                where = f" of {payload['file']}" if payload["file"] else ""
                click.echo(f"--- {lost}{where} missed: {payload['reason']} ---", err=True)
            elif kind == "end":
                click.echo(f"--- {payload['reason']} ---", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()


def _message(exc: Exception) -> str:
    if isinstance(exc, NoSuchFile):
        return f"no such log file: {exc.args[0] if exc.args else ''}"
    if isinstance(exc, BadName):
        return "invalid file name"
    return str(exc)
