"""``flask --app sample_app scrape``: scrape from the command line (inline or via Celery)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import click
from flask import Flask

from .models import PLATFORMS


def register(app: Flask) -> None:
    @app.cli.command("scrape")
    @click.option("--platform", type=click.Choice(PLATFORMS), help="only this platform")
    @click.option("--handle", help="only this account")
    def scrape(platform: str | None, handle: str | None) -> None:
        """Scrape the tracked accounts now and print the run."""
        from flask_observe import bind_correlation_id

        from .tasks import trigger_scrape

        # A command is not a request: give the run an ID of its own so its lines (and, with
        # Celery, the worker's) can be found together — and, with tracing on, a span of its own
        # for its queries and calls to hang under.
        with bind_correlation_id(), _span("flask scrape"):
            run = trigger_scrape("cli", platform, handle)
        click.echo(json.dumps(run.to_dict(), indent=2))
        if run.status == "failed":
            raise SystemExit(1)


def _span(name: str) -> Any:
    """A root span for a command (a no-op without OpenTelemetry or with tracing off)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return contextlib.nullcontext()
    return trace.get_tracer("sample_app.cli").start_as_current_span(name)
