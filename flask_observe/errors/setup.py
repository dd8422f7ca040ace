"""The error-reporting feature: Sentry events for unhandled errors, on the correlation spine."""

from __future__ import annotations

from ..feature import Feature, Plan, Wiring, switch
from .settings import ErrorsSettings
from .spine import errors_wanted

__all__ = ["FEATURE"]


def _wanted(plan: Plan) -> bool:
    settings = plan.settings(ErrorsSettings)
    if not errors_wanted(settings, plan.environ):
        return False
    return switch(
        settings.sentry_enabled,
        "OBSERVE_SENTRY_ENABLED",
        "sentry_sdk",
        "sentry",
        auto="a Sentry DSN is set",
        what="Sentry error reporting",
    )


def _setup(wiring: Wiring) -> None:
    from .hooks import setup_errors

    reporter, undo = setup_errors(wiring)
    wiring.provide(reporter)

    def run_undo() -> None:
        for step in undo:
            step()

    wiring.on_close(run_undo)


FEATURE = Feature("errors", ErrorsSettings, _setup, wanted=_wanted)
