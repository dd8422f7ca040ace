"""The errors feature: the capture layer (always on: it costs nothing until something fails)
and its Sentry sink (when a DSN is set or the host initialised Sentry)."""

from __future__ import annotations

from ..feature import Feature, Plan, Wiring, switch
from .settings import ErrorsSettings
from .spine import host_sentry_active, sentry_wanted

__all__ = ["FEATURE"]


def _sentry_on(plan: Plan | Wiring, settings: ErrorsSettings) -> bool:
    if not sentry_wanted(settings, plan.environ):
        return False
    return switch(
        settings.sentry_enabled,
        "OBSERVE_SENTRY_ENABLED",
        "sentry_sdk",
        "sentry",
        auto="a Sentry DSN is set",
        what="Sentry error reporting",
    )


def _check(plan: Plan) -> None:
    settings = plan.settings(ErrorsSettings)
    if settings.sentry_enabled:
        # Asked for without sentry-sdk: an error naming the extra, before anything is
        # installed (auto-detection is decided, and said once, at setup).
        _sentry_on(plan, settings)


def _setup(wiring: Wiring) -> None:
    from .hooks import setup_errors

    settings = wiring.settings(ErrorsSettings)
    sentry = _sentry_on(wiring, settings)
    undo = setup_errors(wiring, sentry, sentry and host_sentry_active())

    def run_undo() -> None:
        for step in undo:
            step()

    wiring.on_close(run_undo)


FEATURE = Feature("errors", ErrorsSettings, _setup, check=_check)
