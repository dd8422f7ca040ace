"""The health feature: liveness, readiness and startup probes, the full report, and the
functions behind ``observe.add_health_check`` and ``observe.startup_complete``."""

from __future__ import annotations

import dataclasses
import logging
import re

import click

from .._routes import Claim, refuse_taken, routes, watch
from ..feature import Feature, Plan, Wiring
from ..state import ObserveState
from .checks import HealthCheck
from .settings import HealthSettings

__all__ = ["FEATURE", "add_check", "startup_complete"]

logger = logging.getLogger("flask_observe")


def _wanted(plan: Plan) -> bool:
    return plan.settings(HealthSettings).health_enabled


def _claim(settings: HealthSettings) -> Claim:
    prefix = settings.health_url_prefix
    return Claim(
        "OBSERVE_HEALTH_URL_PREFIX",
        "the health endpoints",
        routes(prefix, f"{prefix}/live", f"{prefix}/ready", f"{prefix}/startup"),
        "/_observe/health",
    )


def _check(plan: Plan) -> None:
    refuse_taken(plan.app, _claim(plan.settings(HealthSettings)))


def _excluded(plan: Plan) -> tuple[str, ...]:
    # Probes are polled every few seconds; the full report is for people and must not count
    # against the SLO when it answers 503.
    prefix = re.escape(plan.settings(HealthSettings).health_url_prefix)
    return (rf"^{prefix}(/(live|ready|startup))?/?$",)


def _setup(wiring: Wiring) -> None:
    from ..breakers.registry import BreakerRegistry
    from ..config import CoreSettings
    from ..metrics import Metrics
    from .breakers import show_breakers
    from .report import Identity
    from .runner import HealthRunner
    from .views import health_blueprint

    settings = wiring.settings(HealthSettings)
    core = wiring.settings(CoreSettings)
    runner = HealthRunner(
        wiring.app,
        cache_ttl=settings.health_cache_ttl,
        default_timeout=settings.health_default_timeout,
        wait_for_startup=settings.health_wait_for_startup,
    )
    wiring.provide(runner)
    wiring.on_close(runner.close)
    identity = Identity(
        service_id=wiring.service_name,
        version=core.service_version,
        release_id=settings.health_release_id or core.service_version,
        description=settings.health_description or f"health of {wiring.service_name}",
    )
    wiring.provide(identity)
    wiring.app.register_blueprint(
        health_blueprint(
            runner,
            identity,
            wiring.state.auth,
            url_prefix=settings.health_url_prefix,
            public_details=settings.health_public_details,
        )
    )
    wiring.on_close(watch(wiring.app, _claim(settings)))
    wiring.publish_url("health", settings.health_url_prefix)
    wiring.publish_url("readiness", f"{settings.health_url_prefix}/ready")
    wiring.publish_url("liveness", f"{settings.health_url_prefix}/live")
    registry = wiring.get(BreakerRegistry)
    if registry is not None:
        show_breakers(registry, runner)
    metrics = wiring.get(Metrics)
    if metrics is not None:
        from .metrics import export_health

        wiring.on_close(export_health(metrics, runner))


def add_check(
    state: ObserveState, check: HealthCheck, *, replace: bool = False, copy: bool = False
) -> HealthCheck:
    """Register ``check`` with the app's runner (a copy of it with ``copy``); nothing happens
    when health is off for the app."""
    from .runner import HealthRunner

    runner = state.get(HealthRunner)
    if runner is None:
        logger.debug("health is off on %s: check %r not registered", state.service_name, check.name)
        return check
    return runner.add(dataclasses.replace(check) if copy else check, replace=replace)


def startup_complete(state: ObserveState) -> None:
    """Readiness and startup stop waiting for start-up."""
    from .runner import HealthRunner

    runner = state.get(HealthRunner)
    if runner is not None:
        runner.mark_started()


def _commands() -> list[click.Command]:
    from .cli import health_command

    return [health_command]


FEATURE = Feature(
    "health",
    HealthSettings,
    _setup,
    wanted=_wanted,
    check=_check,
    excluded_paths=_excluded,
    commands=_commands,
)
