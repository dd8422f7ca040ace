"""``flask observe alerts …``: check the alert channels from a shell."""

from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from ..cli import feature_off
from ..state import current_state
from .prometheus import DEFAULT_RUNBOOK_BASE, RulesSpec, render_prometheus_rule, render_rules
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


@alerts.command("prometheus-rules")
@click.option(
    "--selector",
    help='PromQL label matchers of this service\'s series (default: job="<service name>").',
)
@click.option(
    "--runbook-base",
    default=DEFAULT_RUNBOOK_BASE,
    show_default=True,
    help="Base URL of the runbook pages (each alert links <base>/<alert>.md).",
)
@click.option(
    "--kubernetes", is_flag=True, help="As a PrometheusRule manifest (prometheus-operator)."
)
@click.option("--name", help="The PrometheusRule's name (default: <service>-flask-observe).")
@click.option("--namespace", help="The PrometheusRule's namespace.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write here.")
@with_appcontext
def prometheus_rules(
    selector: str | None,
    runbook_base: str,
    kubernetes: bool,
    name: str | None,
    namespace: str | None,
    output: str | None,
) -> None:
    """Render the Prometheus rules of this service from its own settings (SLO objectives,
    alert thresholds), every selector scoped to it, every alert with a runbook_url."""
    state = current_state()
    try:
        spec = RulesSpec.from_config(
            state.config, state.service_name, selector, runbook_base=runbook_base.rstrip("/")
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--selector") from None
    if kubernetes:
        text = render_prometheus_rule(
            spec, name or f"{state.service_name}-flask-observe", namespace
        )
    else:
        text = render_rules(spec)
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        click.echo(text, nl=False)
