"""The tracing feature: OpenTelemetry spans for every request, query and outgoing call."""

from __future__ import annotations

import importlib.util
import re

from ..config import ConfigError
from ..feature import Feature, Plan, Wiring, switch
from . import tracing_wanted
from .settings import TRACING_INSTRUMENTATIONS, TracingSettings

__all__ = ["FEATURE"]

#: A collector address: ``scheme://host[:port][/path]`` or, for gRPC, ``host:port``.
_ENDPOINT = re.compile(r"(?:https?://[^\s/:]+(?::\d{1,5})?(?:/\S*)?|[A-Za-z0-9.-]+:\d{1,5})")

#: instrumentation name -> (the library it traces, the instrumentation's module)
_LIBRARIES = {
    "flask": ("flask", "opentelemetry.instrumentation.flask"),
    "requests": ("requests", "opentelemetry.instrumentation.requests"),
    "sqlalchemy": ("sqlalchemy", "opentelemetry.instrumentation.sqlalchemy"),
    "celery": ("celery", "opentelemetry.instrumentation.celery"),
    "redis": ("redis", "opentelemetry.instrumentation.redis"),
}


def _wanted(plan: Plan) -> bool:
    settings = plan.settings(TracingSettings)
    if not tracing_wanted(settings, plan.environ):
        return False
    return switch(
        settings.tracing_enabled,
        "OBSERVE_TRACING_ENABLED",
        "opentelemetry.sdk.trace",
        "tracing",
        auto="an OTLP endpoint or exporter is configured",
        what="tracing",
    )


def _check(plan: Plan) -> None:
    settings = plan.settings(TracingSettings)
    endpoint = settings.tracing_endpoint
    if endpoint is not None and not _ENDPOINT.fullmatch(endpoint):
        raise ConfigError(
            "OBSERVE_TRACING_ENDPOINT: expected a collector address such as"
            f" 'http://127.0.0.1:4317' (or 'host:port' for gRPC), got {endpoint!r}"
        )
    if settings.tracing_instrumentations != TRACING_INSTRUMENTATIONS:
        # A list set by hand is a demand: each library named that is installed must be
        # traceable (the default list means "whatever is installed").
        for name in settings.tracing_instrumentations:
            library, module = _LIBRARIES[name]
            if _installed(library) and not _installed(module):
                from .._optional import MissingDependencyError

                raise MissingDependencyError(
                    f"OBSERVE_TRACING_INSTRUMENTATIONS names {name!r}: it needs the '{module}'"
                    ' package: pip install "flask-observe[tracing]"'
                )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def _setup(wiring: Wiring) -> None:
    from .provider import setup_tracing

    setup, undo = setup_tracing(wiring)
    wiring.provide(setup)

    def run_undo() -> None:
        for step in undo:
            step()

    wiring.on_close(run_undo)


FEATURE = Feature("tracing", TracingSettings, _setup, wanted=_wanted, check=_check)
