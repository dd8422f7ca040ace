"""``flask observe …``: the command-line side of the extension.

The group is built per app in ``init_app``; features add their subcommands to it
(``flask observe config`` is always there).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import click
from flask.cli import AppGroup, with_appcontext

from .config import PREFIX, SECRET_KEYS

if TYPE_CHECKING:
    from .extension import ObserveState

__all__ = ["build_cli"]


def build_cli(state: ObserveState | None = None) -> AppGroup:
    """The ``observe`` command group for one app, with the commands of its features."""
    group = AppGroup("observe", help="flask_observe: configuration, health, logs, alerts.")
    group.add_command(show_config)
    if state is not None and state.alerts is not None:
        alerts = AppGroup("alerts", help="Alerting: check the channels.")
        alerts.add_command(send_test_alert)
        group.add_command(alerts)
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
