"""Distributed tracing with OpenTelemetry: one trace per request, across services.

``Observe`` turns it on when an OTLP endpoint is configured (or when asked): a tracer provider
per app (``service.name`` and friends), a parent-based sampler, a bounded batch queue, an
exporter (OTLP gRPC or HTTP, console, none) built in the process that exports, and the
instrumentations of Flask, ``requests``, SQLAlchemy, Celery and Redis. See docs/tracing.md.

This module is imported without OpenTelemetry installed; the SDK is imported when tracing is
turned on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .handle import TracingSetup
    from .settings import TracingSettings

__all__ = ["TracingSetup", "choose_exporter", "instrument_engine", "tracing_wanted"]

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def choose_exporter(exporter: str | None, endpoint: str | None, environ: Mapping[str, str]) -> str:
    """The exporter to use: the configured one; else ``none`` or ``console`` when
    ``OTEL_TRACES_EXPORTER`` names it; else OTLP when an endpoint is known (gRPC, or HTTP when
    ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` says ``http/…``); else ``none``."""
    if exporter is not None:
        return exporter
    named = environ.get("OTEL_TRACES_EXPORTER", "").split(",")[0].strip().lower()
    if named in ("none", "console"):
        return named
    if endpoint or any(environ.get(name) for name in _ENDPOINT_VARS):
        protocol = next((environ[n] for n in _PROTOCOL_VARS if environ.get(n)), "grpc")
        return "otlp-http" if protocol.strip().lower().startswith("http") else "otlp-grpc"
    return "none"


def tracing_wanted(config: TracingSettings, environ: Mapping[str, str]) -> bool:
    """``OBSERVE_TRACING_ENABLED``, or (unset) whether there is somewhere to send spans."""
    if config.tracing_enabled is not None:
        return config.tracing_enabled
    return choose_exporter(config.tracing_exporter, config.tracing_endpoint, environ) != "none"


def instrument_engine(engine: Engine) -> bool:
    """Trace the queries of ``engine``, created before ``Observe`` turned tracing on.

    Engines created afterwards, and those Flask-SQLAlchemy made for the app, are traced
    without this. Spans go to the provider of the app whose context is current.

    :returns: ``False`` if the engine was traced already.
    """
    from .instrument import instrument_engine as instrument
    from .routing import router

    return instrument(engine, router())


def __getattr__(name: str) -> object:
    if name == "TracingSetup":
        from .handle import TracingSetup

        return TracingSetup
    raise AttributeError(name)
