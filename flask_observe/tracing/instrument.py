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

from flask import Flask, got_request_exception
from flask.globals import _cv_request
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import Span, TracerProvider

from .. import _optional
from .._internal import FailureLog
from ..hooks import ENVIRON_KEY, SPAN_CONTEXT_KEY
from .sql import qualified_name

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .handle import TracingSetup

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
#: What else turning an instrumentation on installed (SQLAlchemy: the span-naming listeners).
_extra_undo: dict[str, Callable[[], None]] = {}
_KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
#: WSGI environ key: the class of the exception a view raised, for the server span.
ERROR_TYPE_KEY = "flask_observe.error_type"


def instrument_flask(
    app: Flask, provider: TracerProvider, *, response_header: bool, setup: TracingSetup
) -> Callable[[], None] | None:
    """Server spans for ``app``; returns the undo function (``None`` if left to another).

    The request hook puts the correlation ID on the span, the response hook the
    ``traceresponse`` header (when asked) and, for an exception a view raised, its class as
    ``error.type``; then the app's own hooks run (``setup.add_hook("request", …)``).
    """
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
    request_hooks = setup.hooks
    run_hooks = setup.run_hooks

    def request_hook(span: Span, environ: dict[str, Any]) -> None:
        try:
            context = span.get_span_context()
            environ[SPAN_CONTEXT_KEY] = context
            correlation_id = environ.get(ENVIRON_KEY)
            if span.is_recording():
                if correlation_id is not None:
                    span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)
                ctx = _cv_request.get(None)
                if ctx is not None and ctx.request.url_rule is None:
                    # No route matched (404, 405): the conventions name the span after the
                    # method alone, never after the path the client sent.
                    method = str(environ.get("REQUEST_METHOD", ""))
                    span.update_name(method if method in _KNOWN_METHODS else "HTTP")
        except Exception:
            failures("adding the correlation ID to the server span")
        if request_hooks("request"):
            run_hooks("request", span, environ)

    def response_hook(span: Span | None, status: str, headers: list[tuple[str, str]]) -> None:
        if span is None:
            return
        try:
            if response_header:
                context = span.get_span_context()
                if context.is_valid:
                    headers.append(
                        (
                            "traceresponse",
                            f"00-{context.trace_id:032x}-{context.span_id:016x}"
                            f"-{int(context.trace_flags):02x}",
                        )
                    )
            if span.is_recording():
                _split_server_address(span)
            if status[:1] == "5":
                ctx = _cv_request.get(None)
                error_type = ctx.request.environ.get(ERROR_TYPE_KEY) if ctx is not None else None
                if error_type is not None and span.is_recording():
                    # The exception's class says more than the "500" the instrumentation set.
                    span.set_attribute("error.type", error_type)
        except Exception:
            failures("completing the server span at the response")
        if request_hooks("response"):
            run_hooks("response", span, status, headers)

    def on_exception(sender: Flask, exception: BaseException | None = None, **_: Any) -> None:
        ctx = _cv_request.get(None)
        if exception is not None and ctx is not None:
            ctx.request.environ[ERROR_TYPE_KEY] = qualified_name(type(exception))

    FlaskInstrumentor.instrument_app(  # type: ignore[no-untyped-call]
        app,
        request_hook=request_hook,
        response_hook=response_hook,
        tracer_provider=provider,
        enable_commenter=False,
        meter_provider=_NO_METRICS,
    )
    got_request_exception.connect(on_exception, app, weak=False)

    def undo() -> None:
        got_request_exception.disconnect(on_exception, app)
        if getattr(app, "_is_instrumented_by_opentelemetry", False):
            FlaskInstrumentor.uninstrument_app(app)  # type: ignore[no-untyped-call]

    return undo


def _split_server_address(span: Span) -> None:
    """``server.address`` taken from a ``Host: name:port`` header keeps the name; the port
    is ``server.port`` (the WSGI instrumentation writes both into the address)."""
    try:  # one lookup (the SDK's attributes are a Python mapping: get() and len() cost)
        address = span.attributes["server.address"]  # type: ignore[attr-defined]
    except (AttributeError, KeyError, TypeError):
        return
    if not isinstance(address, str) or not address or address[-1] == "]":
        return
    host, colon, port = address.rpartition(":")
    if colon and host and port.isdigit() and (host[-1] == "]" or ":" not in host):
        span.set_attribute("server.address", host.strip("[]"))
        span.set_attribute("server.port", int(port))


def _current_setup() -> TracingSetup | None:
    from .routing import router

    return router().current()


def _client_request_hook(span: Span, request: Any) -> None:
    setup = _current_setup()
    if setup is not None and setup.hooks("client_request"):
        setup.run_hooks("client_request", span, request)


def _client_response_hook(span: Span, request: Any, response: Any) -> None:
    setup = _current_setup()
    if setup is not None and setup.hooks("client_response"):
        setup.run_hooks("client_response", span, request, response)


def _query_hooks() -> tuple[Callable[..., object], ...]:
    setup = _current_setup()
    return setup.hooks("query") if setup is not None else ()


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
    if name == "requests":
        # Process-wide hooks that run the hooks of the app whose context is current.
        options = {"request_hook": _client_request_hook, "response_hook": _client_response_hook}
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
            if name == "sqlalchemy":
                from .sql import install_sql_listeners

                _extra_undo[name] = install_sql_listeners(_query_hooks)
        _users[name] = users + 1

    def release() -> None:
        with _users_lock:
            left = _users.get(name, 0) - 1
            if left > 0:
                _users[name] = left
                return
            _users.pop(name, None)
            instrumentor.uninstrument()
            remove = _extra_undo.pop(name, None)
            if remove is not None:
                remove()

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
