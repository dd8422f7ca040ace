"""The ``Observe`` extension: reads the config once and turns each feature on, in order."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from flask.globals import _cv_app, _cv_request

from . import _optional
from .auth import Authorizer
from .breakers import BreakerRegistry
from .cli import build_cli
from .config import ConfigError, ObserveConfig, config_keys, load_config, option_names
from .correlation import CorrelationMiddleware
from .health.api import HealthAPI, setup_health
from .logging import identity_fields

if TYPE_CHECKING:
    from .health.checks import HealthCheck
    from .health.report import Identity
    from .health.runner import HealthRunner
    from .logging import AccessLog, LoggingSetup
    from .logviewer.viewer import LogViewer
    from .outbound import HostAllowlist

__all__ = ["Observe", "ObserveState"]

EXTENSION_KEY = "observe"


@dataclass
class ObserveState:
    """What ``Observe`` set up for one app; lives in ``app.extensions["observe"]``."""

    config: ObserveConfig
    service_name: str
    #: Grants access to the sensitive endpoints (health details, log viewer, …).
    auth: Authorizer
    #: ``service`` (and ``version``/``environment``) fields of this app's log lines.
    log_identity: Mapping[str, Any] = field(default_factory=dict)
    middleware: CorrelationMiddleware | None = None
    logging: LoggingSetup | None = None
    access_log: AccessLog | None = None
    excluded: Callable[[str], bool] | None = None
    outbound: tuple[str, HostAllowlist] | None = None
    #: The health checks and the machinery running them (``None`` when health is off).
    health: HealthRunner | None = None
    #: ``serviceId``, ``version``… of the health document.
    health_identity: Identity | None = None
    #: The app's circuit breakers (``observe.circuit_breaker``).
    breakers: BreakerRegistry = field(default_factory=BreakerRegistry)
    #: The log viewer (API, page) when ``OBSERVE_LOGVIEWER_ENABLED``.
    logviewer: LogViewer | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Undo what was set up, last first; safe to call twice."""
        while self._closers:
            self._closers.pop()()


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
        config = state.config
        if config.logging_enabled:
            _setup_logging(app, state)
        if config.correlation_enabled:
            _setup_correlation(app, state)
            if config.propagate_hosts:
                _setup_requests(state)
            if config.celery_enabled is not False:
                _setup_celery(state)
        if config.health_enabled:
            setup_health(app, state, self._pending_checks)
        if config.logviewer_enabled:
            _setup_logviewer(app, state)

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

    from .logging import LoggingSetup, configure_structlog

    configure_structlog()
    state.logging = LoggingSetup(state.config, state.log_identity, _current_identity)
    state._closers.append(state.logging.close)
    # Flask's own handler on app.logger would print every app.logger line a second time.
    app.logger.removeHandler(default_handler)


def _setup_correlation(app: Flask, state: ObserveState) -> None:
    from .logging import AccessLog, compile_exclusions

    config = state.config
    state.excluded = compile_exclusions(config.excluded_paths)
    if config.access_log and config.logging_enabled:
        state.access_log = AccessLog(
            state.excluded, config.access_log_remote_addr, identity=state.log_identity
        )

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
        on_finish=state.access_log,
        route_lookup=_matched_route,
        propagate_exceptions=propagate_exceptions,
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


def _outbound_rules() -> tuple[str, HostAllowlist] | None:
    ctx = _cv_app.get(None)
    if ctx is None:
        return None
    state = ctx.app.extensions.get(EXTENSION_KEY)
    return state.outbound if state is not None else None


def _setup_requests(state: ObserveState) -> None:
    _optional.require("requests", "requests", "OBSERVE_PROPAGATE_HOSTS")
    from .outbound import HostAllowlist, RequestsPropagation

    state.outbound = (state.config.request_id_header, HostAllowlist(state.config.propagate_hosts))
    RequestsPropagation(_outbound_rules).install()
    state._closers.append(RequestsPropagation.uninstall)


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
    from .celery_hooks import connect

    connect(keep_logging=config.logging_enabled)
