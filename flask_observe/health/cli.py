"""``flask observe health``: run the checks from a shell (a Docker HEALTHCHECK, a deploy script)."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import with_appcontext

from ..cli import feature_off
from ..state import current_state
from .checks import Status
from .report import Identity, document
from .runner import HealthRunner

__all__ = ["health_command"]

_PROBES = {"live": "liveness", "ready": "readiness", "startup": "startup", "all": None}


@click.command("health")
@click.option(
    "--probe",
    type=click.Choice(list(_PROBES)),
    default="all",
    show_default=True,
    help="which checks: a probe's group, or every check (the full report)",
)
@click.option("--status-only", is_flag=True, help="print only the status")
@with_appcontext
def health_command(probe: str, status_only: bool) -> None:
    """Run the health checks, print the application/health+json report; exit 1 on fail.

    Usable as a Docker HEALTHCHECK or in a deploy script. Runs in this process: start-up
    state is this process's own.
    """
    state = current_state()
    runner, identity = state.get(HealthRunner), state.get(Identity)
    if runner is None or identity is None:
        raise feature_off("health", "OBSERVE_HEALTH_ENABLED is false")
    group = _PROBES[probe]
    report = runner.run(group, trends=group is None)
    doc = document(report, identity, details=not status_only)
    click.echo(json.dumps(doc, indent=2))
    if report.status is Status.FAIL:
        sys.exit(1)
