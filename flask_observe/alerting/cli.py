"""``flask observe alerts …``: check the alert channels from a shell."""

from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from ..cli import feature_off
from ..state import current_state
from .router import AlertRouter

__all__ = ["alerts"]

alerts = AppGroup("alerts", help="Alerting: check the channels.")


@alerts.command("test")
@with_appcontext
def send_test_alert() -> None:
    """Send a test alert to every configured channel now; exit 1 if any failed."""
    router = current_state().get(AlertRouter)
    if router is None:
        raise feature_off("alerting", "no channel is configured (OBSERVE_ALERT_CHANNELS)")
    results = router.send_test()
    for name, outcome in results.items():
        click.echo(f"{name}: {outcome}")
    if any(outcome != "ok" for outcome in results.values()):
        raise SystemExit(1)
