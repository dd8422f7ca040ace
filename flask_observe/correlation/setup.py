"""The correlation feature: the one request middleware (IDs, one timing per request, every
feature's request hooks), the ID on outgoing ``requests`` calls to allowed hosts, and in Celery
task messages.

It is set up last: its middleware wraps whatever the features before it wrapped (tracing's
Flask instrumentation), so the ID is bound before any span starts, and it runs the request
hooks those features registered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import got_request_exception
from flask.globals import _cv_app, _cv_request

from .. import _optional
from .._internal import FailureLog
from ..config import ConfigError
from ..feature import Feature, Plan, Wiring, switch
from ..hooks import RECORD_KEY, OutboundCall, OutboundHook, Stage, compose, trace_id_lookup
from ..logging.settings import LoggingSettings
from ..state import EXTENSION_KEY
from .settings import CorrelationSettings

__all__ = ["FEATURE"]

#: ``host``, ``host:port``, ``[v6]:port``, ``*.domain`` or ``*``.
_HOST_PATTERN = re.compile(
    r"\*|(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?"
)


def _check(plan: Plan) -> None:
    settings = plan.settings(CorrelationSettings)
    for pattern in settings.propagate_hosts:
        if not _HOST_PATTERN.fullmatch(pattern.strip()):
            host = urlsplit(pattern).netloc if "://" in pattern else None
            hint = f"; write {host!r}" if host else ""
            raise ConfigError(
                f"OBSERVE_PROPAGATE_HOSTS: {pattern!r} is not a host pattern (host, host:port,"
                f" *.domain or *){hint}"
            )
    if settings.correlation_enabled and settings.propagate_hosts:
        _optional.require("requests", "requests", "OBSERVE_PROPAGATE_HOSTS")
    if settings.correlation_enabled and settings.celery_enabled:
        _optional.require("celery", "celery", "OBSERVE_CELERY_ENABLED")


def _setup(wiring: Wiring) -> None:
    settings = wiring.settings(CorrelationSettings)
    _install_middleware(wiring, settings)
    _install_outbound(wiring, settings)
    if settings.correlation_enabled and switch(
        settings.celery_enabled,
        "OBSERVE_CELERY_ENABLED",
        "celery",
        "celery",
        what="Celery correlation IDs",
    ):
        from .celery import connect, disconnect

        keep_logging = wiring.settings(LoggingSettings).logging_enabled
        connect(keep_logging)
        wiring.on_close(lambda: disconnect(keep_logging))


def _install_middleware(wiring: Wiring, settings: CorrelationSettings) -> None:
    """The one WSGI middleware: correlation IDs (when on) and one timing per request, handed
    to the request hooks (metrics and diagnostics, then the access line)."""
    from .middleware import CorrelationMiddleware

    app = wiring.app
    hooks = wiring.take_hooks()
    ticker = wiring.state.ticker
    if not (settings.correlation_enabled or any(hooks.values()) or ticker is not None):
        return

    def propagate_exceptions() -> bool:
        value = app.config.get("PROPAGATE_EXCEPTIONS")
        return bool(value) if value is not None else bool(app.testing or app.debug)

    original = app.wsgi_app
    middleware = CorrelationMiddleware(
        original,
        header=settings.request_id_header,
        fallback_headers=settings.request_id_fallback_headers,
        trust_incoming=settings.request_id_trust_incoming,
        max_length=settings.request_id_max_length,
        on_start=compose(hooks[Stage.START]),
        on_finish=compose(hooks[Stage.MEASURE] + hooks[Stage.LOG]),
        route_lookup=_matched_route,
        propagate_exceptions=propagate_exceptions,
        ids=settings.correlation_enabled,
        trace_lookup=trace_id_lookup() if wiring.trace_ids_wanted else None,
        ticker=ticker,
    )
    app.wsgi_app = middleware  # type: ignore[method-assign]
    wiring.provide(middleware)
    # An exception Flask re-raises (debug mode, PROPAGATE_EXCEPTIONS) leaves the app before
    # any response starts: the route is noted when Flask announces the exception, while its
    # request context is still there. (A signal sent only then, where a teardown function
    # would cost every request Flask's coroutine check of it.)
    got_request_exception.connect(_note_route_on_error, app, weak=False)

    def unwrap() -> None:
        if app.wsgi_app is middleware:
            app.wsgi_app = original  # type: ignore[method-assign]
        got_request_exception.disconnect(_note_route_on_error, app)

    wiring.on_close(unwrap)


def _matched_route() -> str | None:
    """The URL rule of the current request (``None`` if no route matched).

    Read through Flask's context variable rather than the ``request`` proxy: it runs on every
    request, and the proxy costs three times as much.
    """
    ctx = _cv_request.get(None)
    if ctx is None:
        return None
    rule = ctx.request.url_rule
    return rule.rule if rule is not None else None


def _note_route_on_error(
    sender: object, exception: BaseException | None = None, **_: object
) -> None:
    """A request raised (``got_request_exception``): its :class:`RequestRecord` gets the
    matched route (the request context goes before the middleware sees the exception)."""
    if exception is None:
        return
    ctx = _cv_request.get(None)
    if ctx is None:
        return
    record = ctx.request.environ.get(RECORD_KEY)
    if record is not None and record.route is None:
        rule = ctx.request.url_rule
        record.route = rule.rule if rule is not None else None


def _install_outbound(wiring: Wiring, settings: CorrelationSettings) -> None:
    """Outgoing ``requests`` calls: the correlation ID to allowed hosts, and the trace context
    to nobody else."""
    from .outbound import OUTSIDE_APP, HostAllowlist, OutboundRules, RequestsPropagation

    header = (
        settings.request_id_header
        if settings.correlation_enabled and settings.propagate_hosts
        else None
    )
    trace_fields: tuple[str, ...] = ()
    current_fields: Callable[[], set[str]] | None = None
    if "tracing" in wiring.state.features:
        # A propagator the host installs after init_app is looked up at each call.
        from opentelemetry.propagate import get_global_textmap

        trace_fields = tuple(sorted(get_global_textmap().fields))
        current_fields = lambda: get_global_textmap().fields  # noqa: E731
    observers = wiring.take_outbound_hooks()
    if header is None and (
        not (trace_fields or observers)
        or _optional.detect("requests", "outbound trace headers and metrics") is None
    ):
        return
    rules = OutboundRules(
        header,
        HostAllowlist(settings.propagate_hosts),
        trace_fields,
        current_fields,
        observe=_compose_outbound(observers),
    )
    wiring.provide(rules)

    def current_rules() -> OutboundRules | None:
        # state_or_none() and its get(), inlined: this runs on every outgoing call.
        ctx = _cv_app.get(None)
        if ctx is None:
            return OUTSIDE_APP
        state = ctx.app.extensions.get(EXTENSION_KEY)
        return state.handles.get(OutboundRules) if state is not None else None

    RequestsPropagation(current_rules).install(rules)
    wiring.on_close(lambda: RequestsPropagation.uninstall(rules))


def _compose_outbound(hooks: list[OutboundHook]) -> OutboundHook | None:
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]
    chain = tuple(hooks)
    failures = FailureLog()

    def run_all(call: OutboundCall) -> None:
        # Each guarded: one failing (metrics) leaves the others (OTLP, the console) the call.
        for hook in chain:
            try:
                hook(call)
            except Exception:
                failures(f"outbound call hook {getattr(hook, '__qualname__', hook)}")

    return run_all


FEATURE = Feature("correlation", CorrelationSettings, _setup, check=_check)
