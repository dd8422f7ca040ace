"""``flask observe …``: the command-line side of the extension.

The group is built per app in ``init_app``; features add their subcommands to it
(``flask observe config`` is always there).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any

import click
from flask.cli import AppGroup, with_appcontext

from .config import PREFIX, SECRET_KEYS

if TYPE_CHECKING:
    from .extension import ObserveState

__all__ = ["build_cli"]


def build_cli(state: ObserveState) -> AppGroup:
    """The ``observe`` command group for one app, with a command for each feature that is on."""
    group = AppGroup("observe", help="flask_observe: configuration, health, logs, alerts.")
    group.add_command(show_config)
    if state.health is not None:
        group.add_command(health_command)
    if state.alerts is not None:
        alerts = AppGroup("alerts", help="Alerting: check the channels.")
        alerts.add_command(send_test_alert)
        group.add_command(alerts)
    config = state.config
    if config.logviewer_dir or config.log_dir:
        from .logviewer.cli import logs

        group.add_command(logs)
    return group


@click.command("test")
@with_appcontext
def send_test_alert() -> None:
    """Send a test alert to every configured channel now; exit 1 if any failed."""
    from .extension import Observe

    router = Observe.state().alerts
    if router is None:
        raise click.ClickException("alerting is off: no OBSERVE_ALERT_CHANNELS configured")
    results = router.send_test()
    for name, outcome in results.items():
        click.echo(f"{name}: {outcome}")
    if any(outcome != "ok" for outcome in results.values()):
        raise SystemExit(1)


@click.command("config")
@with_appcontext
def show_config() -> None:
    """Print the effective OBSERVE_* settings as JSON (secrets hidden)."""
    from .extension import Observe

    config = Observe.state().config
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in SECRET_KEYS and value not in (None, ()):
            value = "<set>"
        elif callable(value):
            value = f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', value)}"
        out[PREFIX + f.name.upper()] = value
    click.echo(json.dumps(out, indent=2, default=str))


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
    from .extension import Observe
    from .health.checks import Status
    from .health.report import document

    state = Observe.state()
    if state.health is None or state.health_identity is None:
        raise click.ClickException("health is off (OBSERVE_HEALTH_ENABLED)")
    group = _PROBES[probe]
    report = state.health.run(group, trends=group is None)
    doc = document(report, state.health_identity, details=not status_only)
    click.echo(json.dumps(doc, indent=2))
    if report.status is Status.FAIL:
        sys.exit(1)
