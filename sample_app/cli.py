"""``flask --app sample_app scrape``: scrape from the command line (inline or via Celery)."""

from __future__ import annotations

import json

import click
from flask import Flask

from .models import PLATFORMS


def register(app: Flask) -> None:
    @app.cli.command("scrape")
    @click.option("--platform", type=click.Choice(PLATFORMS), help="only this platform")
    @click.option("--handle", help="only this account")
    def scrape(platform: str | None, handle: str | None) -> None:
        """Scrape the tracked accounts now and print the run."""
        from flask_observe import new_correlation_id
        from flask_observe.correlation import reset_correlation_id, set_correlation_id

        from .tasks import trigger_scrape

        # A command is not a request: give the run an ID of its own so its lines (and, with
        # Celery, the worker's) can be found together.
        token = set_correlation_id(new_correlation_id())
        try:
            run = trigger_scrape("cli", platform, handle)
            click.echo(json.dumps(run.to_dict(), indent=2))
        finally:
            reset_correlation_id(token)
        if run.status == "failed":
            raise SystemExit(1)
