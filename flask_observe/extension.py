"""The ``Observe`` extension: reads the config once and turns each feature on, in order."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from flask.globals import _cv_app, _cv_request

from . import _optional
from .auth import Authorizer
from .cli import build_cli
from .config import ConfigError, ObserveConfig, config_keys, load_config, option_names
from .correlation import CorrelationMiddleware
from .health.api import HealthAPI, setup_health
from .logging import identity_fields
from .state import EXTENSION_KEY, Hook, ObserveState

if TYPE_CHECKING:
    from .correlation import RequestRecord
    from .health.checks import HealthCheck
    from .metrics import Metrics
    from .outbound import OutboundRules

__all__ = ["Observe", "ObserveState"]


class Observe(HealthAPI):
    """Production observability for a Flask app in one line.

    ``Observe(app)`` or, in an app factory, ``observe = Observe()`` then
    ``observe.init_app(app)``. Settings come from ``OBSERVE_*`` keys in ``app.config``;
    keyword ``options`` (``Observe(log_dir="logs")``) are defaults that ``app.config``
    overrides. See docs/configuration.md for every key.

    :param app: the app to set up now, or ``None`` to call :meth:`init_app` later.
    :param options: lower-case setting names without the ``OBSERVE_`` prefix.
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        unknown = sorted(set(options) - option_names())
        if unknown:
            raise TypeError(f"Observe() got unknown option(s): {', '.join(unknown)}")
        self._options = options
        #: Checks added outside any app context: every app initialised later gets a copy.
        self._pending_checks: list[HealthCheck] = []
        self._initialised = 0
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the config of ``app`` and turn its features on.

        :raises RuntimeError: if ``app`` already has an ``Observe`` instance.
        :raises ConfigError: if a setting is invalid.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "An 'Observe' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        for key, default in config_keys().items():
            option = key.removeprefix("OBSERVE_").lower()
            app.config.setdefault(key, self._options.get(option, default))
        config = load_config(app.config, {})
        service_name = config.service_name or app.name
        state = ObserveState(
            config=config,
            service_name=service_name,
            auth=Authorizer(config.auth_token, config.auth_callback),
            log_identity=identity_fields(config, service_name),
        )
        app.extensions[EXTENSION_KEY] = state
        self._initialised += 1
        if not config.enabled:
            return
        try:
            self._setup(app, state)
        except BaseException:
            state.close()
            del app.extensions[EXTENSION_KEY]
            raise
        app.cli.add_command(build_cli(state))

    def _setup(self, app: Flask, state: ObserveState) -> None:
        from .access_log import compile_exclusions
        from .metrics.setup import export_components, metrics_wanted, setup_metrics

        config = state.config
        # The one exclusion list, shared by the access log, tracing and metrics.
        state.excluded = compile_exclusions(config.excluded_paths or ())
        # Libraries' own variables (OTEL_*, SENTRY_DSN) decide "auto" switches: read once.
        environ = dict(os.environ)
        if config.logging_enabled:
            _setup_logging(app, state)
        trace_fields: tuple[str, ...] = ()
        if _tracing_wanted(config, environ):
            trace_fields = _setup_tracing(app, state, environ)
        if metrics_wanted(config):
            setup_metrics(app, state)
        if config.alert_channels:
            from .alerting.setup import setup_alerting

            setup_alerting(state)
        if state.ticker is not None:
            ticker = state.ticker
            if state.metrics is not None:
                state.metrics.http.ticker = ticker
            else:
                state._start_hooks.append(lambda _record: ticker.ensure_started())
            state._closers.append(ticker.close)
        # After tracing: the middleware wraps the instrumented app (outermost).
        if config.correlation_enabled or state._start_hooks or state._finish_hooks:
            _setup_middleware(app, state)
        if config.correlation_enabled and config.celery_enabled is not False:
            _setup_celery(state)
        _setup_outbound(state, trace_fields)
        if config.health_enabled:
            setup_health(app, state, self._pending_checks)
            if state.health is not None and state.budgets is not None:
                from .slo import budget_check

                state.health.add(budget_check(state.budgets))
        if state.metrics is not None:
            export_components(state)
        if config.logviewer_enabled:
            _setup_logviewer(app, state)
        if _errors_wanted(config, environ):
            _setup_errors(app, state, environ)

    @property
    def metrics(self) -> Metrics:
        """The current app's :class:`~flask_observe.metrics.Metrics` (business-metric API).

        :raises RuntimeError: outside an app context, or if metrics are off for the app.
        """
        metrics = Observe.state().metrics
        if metrics is None:
            raise RuntimeError(
                "metrics are off for this app (OBSERVE_METRICS_ENABLED, or prometheus_client"
                ' is missing: pip install "flask-observe[metrics]")'
            )
        return metrics

    @staticmethod
    def state(app: Flask | None = None) -> ObserveState:
        """The state of ``app`` (default: the current app).

        :raises RuntimeError: if ``Observe`` was not initialised on that app.
        """
        target = app if app is not None else current_app
        try:
            return target.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
        except KeyError:
            raise RuntimeError(
                "flask_observe is not initialised on this app: call Observe(app) or"
                " observe.init_app(app) first."
            ) from None

    def shutdown(self, app: Flask) -> None:
        """Undo ``init_app``: remove handlers (flushing files), unwrap, release patches.

        Mostly for tests and for apps created and discarded in one process; a normal process
        exit closes log files on its own.
        """
        state = app.extensions.pop(EXTENSION_KEY, None)
        if state is not None:
            state.close()


def _current_identity() -> Mapping[str, Any] | None:
    ctx = _cv_app.get(None)
    if ctx is None:
        return None
    state = ctx.app.extensions.get(EXTENSION_KEY)
    return state.log_identity if state is not None else None


def _setup_logging(app: Flask, state: ObserveState) -> None:
    from flask.logging import default_handler

    from .log_setup import LoggingSetup
    from .logging import configure_structlog

    configure_structlog()
    state.logging = LoggingSetup(state.config, state.log_identity, _current_identity)
    state._closers.append(state.logging.close)
    # Flask's own handler on app.logger would print every app.logger line a second time.
    app.logger.removeHandler(default_handler)


def _compose(hooks: list[Hook]) -> Hook | None:
    """One hook calling each of ``hooks``; a failing one does not stop the others."""
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]
    from ._internal import FailureLog

    failures = FailureLog()
    chain = tuple(hooks)

    def run_all(record: RequestRecord) -> None:
        for hook in chain:
            try:
                hook(record)
            except Exception:
                failures(f"request hook {getattr(hook, '__qualname__', hook)}")

    return run_all


def _setup_middleware(app: Flask, state: ObserveState) -> None:
    """The one WSGI middleware: correlation IDs (when on) and one timing per request, handed
    to the finish hooks (metrics, diagnostics, then the access log)."""
    from .access_log import AccessLog

    config = state.config
    if config.correlation_enabled and config.access_log and config.logging_enabled:
        state.access_log = AccessLog(
            state.excluded, config.access_log_remote_addr, identity=state.log_identity
        )
        state._finish_hooks.append(state.access_log)
    trace_lookup = None
    if state.metrics is not None and config.metrics_exemplars:
        from .metrics.http import otel_trace_lookup

        trace_lookup = otel_trace_lookup()

    def propagate_exceptions() -> bool:
        value = app.config.get("PROPAGATE_EXCEPTIONS")
        return bool(value) if value is not None else bool(app.testing or app.debug)

    original = app.wsgi_app
    middleware = CorrelationMiddleware(
        original,
        header=config.request_id_header,
        fallback_headers=config.request_id_fallback_headers,
        trust_incoming=config.request_id_trust_incoming,
        max_length=config.request_id_max_length,
        on_finish=_compose(state._finish_hooks),
        route_lookup=_matched_route,
        propagate_exceptions=propagate_exceptions,
        on_start=_compose(state._start_hooks),
        ids=config.correlation_enabled,
        trace_lookup=trace_lookup,
    )
    app.wsgi_app = middleware  # type: ignore[method-assign]
    state.middleware = middleware

    def unwrap() -> None:
        if app.wsgi_app is middleware:
            app.wsgi_app = original  # type: ignore[method-assign]

    state._closers.append(unwrap)


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


def _outbound_rules() -> OutboundRules | None:
    ctx = _cv_app.get(None)
    if ctx is None:
        from .outbound import OUTSIDE_APP

        return OUTSIDE_APP
    state = ctx.app.extensions.get(EXTENSION_KEY)
    return state.outbound if state is not None else None


def _setup_outbound(state: ObserveState, trace_fields: tuple[str, ...]) -> None:
    """Outgoing ``requests`` calls: the correlation ID to allowed hosts, and the trace context
    to nobody else."""
    config = state.config
    header = (
        config.request_id_header if config.correlation_enabled and config.propagate_hosts else None
    )
    if header is not None:
        _optional.require("requests", "requests", "OBSERVE_PROPAGATE_HOSTS")
    elif not trace_fields or _optional.detect("requests", "outbound trace headers") is None:
        return
    from .outbound import HostAllowlist, OutboundRules, RequestsPropagation

    current_fields: Callable[[], set[str]] | None = None
    if trace_fields:
        # A propagator the host installs after init_app is looked up at each call.
        from opentelemetry.propagate import get_global_textmap

        current_fields = lambda: get_global_textmap().fields  # noqa: E731
    rules = OutboundRules(
        header, HostAllowlist(config.propagate_hosts), trace_fields, current_fields
    )
    state.outbound = rules
    RequestsPropagation(_outbound_rules).install(rules)
    state._closers.append(lambda: RequestsPropagation.uninstall(rules))


def _tracing_wanted(config: ObserveConfig, environ: Mapping[str, str]) -> bool:
    from .tracing import tracing_wanted

    if not tracing_wanted(config, environ):
        return False
    if config.tracing_enabled:
        _optional.require("opentelemetry.sdk.trace", "tracing", "OBSERVE_TRACING_ENABLED")
        return True
    detected = _optional.detect("opentelemetry.sdk.trace", "tracing (an OTLP endpoint is set)")
    return detected is not None


def _setup_tracing(app: Flask, state: ObserveState, environ: Mapping[str, str]) -> tuple[str, ...]:
    """Turn tracing on; returns the trace context headers to keep from third-party hosts."""
    from opentelemetry.propagate import get_global_textmap

    from .tracing.setup import setup_tracing

    state.tracing, undo = setup_tracing(app, state, environ)
    state._closers.append(lambda: _run_all(undo))
    return tuple(sorted(get_global_textmap().fields))


def _errors_wanted(config: ObserveConfig, environ: Mapping[str, str]) -> bool:
    from .errors import errors_wanted

    if not errors_wanted(config, environ):
        return False
    if config.sentry_enabled:
        _optional.require("sentry_sdk", "sentry", "OBSERVE_SENTRY_ENABLED")
        return True
    return _optional.detect("sentry_sdk", "Sentry error reporting (a DSN is set)") is not None


def _setup_errors(app: Flask, state: ObserveState, environ: Mapping[str, str]) -> None:
    from .errors.hooks import setup_errors

    state.errors, undo = setup_errors(app, state, environ)
    state._closers.append(lambda: _run_all(undo))


def _run_all(steps: list[Callable[[], object]]) -> None:
    for step in steps:
        step()


def _setup_logviewer(app: Flask, state: ObserveState) -> None:
    config = state.config
    if not state.auth.configured:
        raise ConfigError(
            "OBSERVE_LOGVIEWER_ENABLED: the log viewer is never public; set OBSERVE_AUTH_TOKEN"
            " (a bearer token of 16+ characters) or OBSERVE_AUTH_CALLBACK (your own check)"
        )
    if not (config.logviewer_dir or config.log_dir):
        raise ConfigError(
            "OBSERVE_LOGVIEWER_ENABLED: there are no log files to show; set OBSERVE_LOG_DIR"
            " (or OBSERVE_LOGVIEWER_DIR to read another directory)"
        )
    api, ui = config.logviewer_api_prefix, config.logviewer_ui_path
    if api == ui or api.startswith(ui + "/") or ui.startswith(api + "/"):
        raise ConfigError(
            "OBSERVE_LOGVIEWER_UI_PATH: must not be or contain OBSERVE_LOGVIEWER_API_PREFIX"
            f" ({ui!r} and {api!r})"
        )
    _optional.require("re2", "logviewer", "OBSERVE_LOGVIEWER_ENABLED")
    from .logviewer.views import register

    viewer = register(app, state)
    state.logviewer = viewer
    state._closers.append(viewer.close)


def _setup_celery(state: ObserveState) -> None:
    config = state.config
    if config.celery_enabled:
        _optional.require("celery", "celery", "OBSERVE_CELERY_ENABLED")
    elif _optional.detect("celery", "Celery correlation IDs") is None:
        return
    from .celery_hooks import connect, disconnect

    keep_logging = config.logging_enabled
    connect(keep_logging)
    state._closers.append(lambda: disconnect(keep_logging))
