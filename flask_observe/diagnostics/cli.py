"""``flask observe db …``: what the SQL diagnostics know of this process's queries."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click
from flask.cli import AppGroup, with_appcontext

from ..cli import feature_off
from ..state import current_state
from .queries import QueryDiagnostics

__all__ = ["db"]

db = AppGroup("db", help="SQL diagnostics: per-statement statistics, recent slow queries.")


def _diagnostics() -> QueryDiagnostics:
    found = current_state().get(QueryDiagnostics)
    if found is None:
        raise feature_off(
            "SQL diagnostics",
            "OBSERVE_DIAGNOSTICS_SQL is false, metrics are off, or SQLAlchemy is missing",
        )
    return found


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


@db.command("stats")
@click.option("--top", type=click.IntRange(1), default=20, show_default=True)
@click.option(
    "--sort",
    type=click.Choice(["total", "count", "p95", "max"]),
    default="total",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@with_appcontext
def stats(top: int, sort: str, as_json: bool) -> None:
    """The statements this process ran, by fingerprint (parameters never kept).

    Counts are this process's since it started (under gunicorn, each worker's own).
    """
    rows = _diagnostics().statistics(top, sort)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['count']:>7} x  total {row['total_ms']:>10.1f} ms  p50 {row['p50_ms']:>8.1f}"
            f"  p95 {row['p95_ms']:>8.1f}  p99 {row['p99_ms']:>8.1f}  max {row['max_ms']:>8.1f}"
            f"  last {_when(row['last_seen'])}  {row['statement'][:160]}"
        )


@db.command("slow")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@with_appcontext
def slow(as_json: bool) -> None:
    """The last slow queries of this process, newest first, with their request's ID."""
    rows = _diagnostics().recent_slow()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{_when(row['timestamp'])}  {row['duration_ms']:>8.1f} ms  {row['operation']:<7}"
            f"  {row.get('correlation_id') or '-'}  {row['statement'][:160]}"
        )
