"""The OpenTelemetry instrumentations, turned on and off: Flask per app, the rest per process.

- Flask: ``FlaskInstrumentor.instrument_app`` on the app, with the app's own provider. Its
  request hook puts the correlation ID on the server span; its response hook adds the
  ``traceresponse`` header when asked. An app instrumented already (by the host, or by
  ``opentelemetry-instrument``) is left as it is: one server span per request, never two.
- ``requests``, SQLAlchemy, Celery, Redis: the instrumentor of each library that is installed,
  with the process's routing provider. The first app that needs one turns it on, the last one
  turns it off; one the host turned on itself is left alone.

Metrics that these instrumentations can record are not asked for (a no-op meter provider):
this is tracing; metrics are a feature of their own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import Span, TracerProvider

from .. import _optional
from .._internal import FailureLog
from ..hooks import ENVIRON_KEY, SPAN_CONTEXT_KEY

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["acquire_shared", "instrument_engine", "instrument_flask"]

logger = logging.getLogger("flask_observe.tracing")

#: Name of the server span attribute carrying the correlation ID.
CORRELATION_ATTRIBUTE = "correlation_id"

_NO_METRICS = NoOpMeterProvider()

#: name → (library, instrumentation module, instrumentor class, extra options)
_SHARED: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "requests": ("requests", "opentelemetry.instrumentation.requests", "RequestsInstrumentor", {}),
    "sqlalchemy": (
        "sqlalchemy",
        "opentelemetry.instrumentation.sqlalchemy",
        "SQLAlchemyInstrumentor",
        {"enable_commenter": False},
    ),
    "celery": ("celery", "opentelemetry.instrumentation.celery", "CeleryInstrumentor", {}),
    "redis": ("redis", "opentelemetry.instrumentation.redis", "RedisInstrumentor", {}),
}
# Process-wide by nature (the libraries are patched once per process): apps using each of
# the instrumentations this module turned on.
_users: dict[str, int] = {}
_users_lock = threading.Lock()


def instrument_flask(
    app: Flask, provider: TracerProvider, *, response_header: bool
) -> Callable[[], None] | None:
    """Server spans for ``app``; returns the undo function (``None`` if left to another)."""
    _optional.require("opentelemetry.instrumentation.flask", "tracing", "tracing of Flask")
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        logger.info(
            "flask_observe: %s is already instrumented by OpenTelemetry; its server spans are"
            " kept as they are (without the correlation ID attribute)",
            app.name,
        )
        return None
    failures = FailureLog()

    def request_hook(span: Span, environ: dict[str, Any]) -> None:
        try:
            context = span.get_span_context()
            environ[SPAN_CONTEXT_KEY] = context
            correlation_id = environ.get(ENVIRON_KEY)
            if correlation_id is not None and span.is_recording():
                span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)
        except Exception:
            failures("adding the correlation ID to the server span")

    def response_hook(span: Span | None, status: str, headers: list[tuple[str, str]]) -> None:
        if span is None:
            return
        try:
            context = span.get_span_context()
            if context.is_valid:
                headers.append(
                    (
                        "traceresponse",
                        f"00-{context.trace_id:032x}-{context.span_id:016x}"
                        f"-{int(context.trace_flags):02x}",
                    )
                )
        except Exception:
            failures("adding the traceresponse header")

    FlaskInstrumentor.instrument_app(  # type: ignore[no-untyped-call]
        app,
        request_hook=request_hook,
        response_hook=response_hook if response_header else None,
        tracer_provider=provider,
        enable_commenter=False,
        meter_provider=_NO_METRICS,
    )

    def undo() -> None:
        if getattr(app, "_is_instrumented_by_opentelemetry", False):
            FlaskInstrumentor.uninstrument_app(app)  # type: ignore[no-untyped-call]

    return undo


def acquire_shared(
    name: str, provider: TracerProvider, *, required: bool = False
) -> Callable[[], None] | None:
    """Turn on the instrumentation ``name`` for one more app; returns its release function.

    ``None`` when the library is not installed, or when someone else instrumented it.

    :param required: named explicitly in the configuration: a missing instrumentation package
        is an error; otherwise it is logged at debug and skipped.
    :raises MissingDependencyError: if required, the library is installed and its
        instrumentation is not.
    """
    library, module_name, class_name, options = _SHARED[name]
    if _optional.detect(library, f"tracing of {library}") is None:
        return None
    if required:
        module = _optional.require(module_name, "tracing", f"tracing of {library}")
    else:
        found = _optional.detect(module_name, f"tracing of {library}")
        if found is None:
            return None
        module = found
    instrumentor = getattr(module, class_name)()
    with _users_lock:
        users = _users.get(name, 0)
        if users == 0:
            if instrumentor.is_instrumented_by_opentelemetry:
                logger.info("flask_observe: %s is instrumented already; left as it is", library)
                return None
            # skip_dep_check: the instrumentations' version ranges lag behind the libraries'
            # releases (SQLAlchemy 2.1); the tests prove the spans.
            try:
                instrumentor.instrument(
                    tracer_provider=provider,
                    meter_provider=_NO_METRICS,
                    skip_dep_check=True,
                    **options,
                )
            except Exception:
                # Start-up goes on without it; undo whatever was patched before the failure.
                logger.exception("flask_observe: tracing of %s could not be turned on", library)
                with contextlib.suppress(Exception):
                    instrumentor._uninstrument()
                return None
        _users[name] = users + 1

    def release() -> None:
        with _users_lock:
            left = _users.get(name, 0) - 1
            if left > 0:
                _users[name] = left
                return
            _users.pop(name, None)
            instrumentor.uninstrument()

    return release


def instrument_engine(engine: Engine, provider: TracerProvider) -> bool:
    """Trace the queries of an engine created before the SQLAlchemy instrumentation was on.

    :returns: ``False`` if the engine was traced already.
    """
    from opentelemetry.instrumentation.sqlalchemy import __name__ as scope_name
    from opentelemetry.instrumentation.sqlalchemy import engine as otel_engine
    from opentelemetry.instrumentation.sqlalchemy.version import __version__
    from sqlalchemy import event

    # Every EngineTracer registers this same module-level function: its presence says the
    # engine is traced already (by the create_engine patch, or by an earlier call).
    if event.contains(engine, "handle_error", otel_engine._handle_error):
        return False
    connections = _NO_METRICS.get_meter(scope_name).create_up_down_counter("unused")
    tracer = provider.get_tracer(scope_name, __version__)
    otel_engine.EngineTracer(tracer, engine, connections)  # type: ignore[no-untyped-call]
    return True


def instrument_flask_sqlalchemy_engines(app: Flask, provider: TracerProvider) -> int:
    """Trace the engines Flask-SQLAlchemy already made for ``app`` (``init_app`` before us)."""
    extension = app.extensions.get("sqlalchemy")
    if extension is None:
        return 0
    with app.app_context():
        engines = getattr(extension, "engines", None)
        found = list(engines.values()) if isinstance(engines, Mapping) else []
    return sum(instrument_engine(engine, provider) for engine in found)
