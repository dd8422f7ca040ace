"""The ``Observe`` extension: the ordered list of features, and the one loop that sets them up.

``init_app`` reads every setting once, asks each feature in :data:`FEATURES` whether it is
wanted and checks the wanted ones (every configuration and dependency error is raised before
anything is installed), then sets them up in order. The order is the dependency order: a
feature may use the handles of the features before it (see docs/architecture.md).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, has_app_context
from flask import current_app as _current_app

from ._internal import compile_exclusions
from .alerting.rules import RuleEngine
from .alerting.setup import FEATURE as ALERTING
from .auth import Authorizer
from .breakers.registry import BreakerRegistry
from .breakers.setup import FEATURE as BREAKERS
from .cli import build_cli
from .config import CoreSettings, compose, config_keys, load_config
from .console.setup import FEATURE as CONSOLE
from .correlation.setup import FEATURE as CORRELATION
from .diagnostics.setup import FEATURE as DIAGNOSTICS
from .errors.setup import FEATURE as ERRORS
from .feature import Feature, Plan, Wiring
from .health.setup import FEATURE as HEALTH
from .health.setup import add_check, startup_complete
from .logging.setup import FEATURE as LOGGING
from .logviewer.setup import FEATURE as LOGVIEWER
from .metrics.setup import FEATURE as METRICS
from .otlp.setup import FEATURE as OTLP
from .slo.setup import FEATURE as SLO
from .state import EXTENSION_KEY, ObserveState, current_state
from .tracing.setup import FEATURE as TRACING

if TYPE_CHECKING:
    from .alerting.rules import Rule
    from .health.checks import HealthCheck
    from .metrics import Metrics

__all__ = ["FEATURES", "Observe", "ObserveConfig"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Every feature, in set-up order. A feature may use what the features before it provide.
FEATURES: tuple[Feature, ...] = (
    LOGGING,  # first: every later feature logs through its handlers
    TRACING,  # the tracer provider; wraps app.wsgi_app with the Flask instrumentation
    ERRORS,  # Sentry; tags events with the request's correlation and trace IDs
    METRICS,  # the registry and the RED metrics (request hooks)
    DIAGNOSTICS,  # SQL, memory and disk figures into the metrics
    BREAKERS,  # the app's circuit breakers
    HEALTH,  # probes; a check per breaker; check results into the metrics
    SLO,  # error budgets from the metrics; a check in health
    ALERTING,  # rules over metrics, memory, breakers and health; the channels
    LOGVIEWER,  # reads the files the logging feature writes
    CONSOLE,  # traces, errors, runtime controls behind the log viewer's sign-in
    OTLP,  # logs and metrics over OTLP: the log records, the request and outbound hooks
    CORRELATION,  # last: its middleware wraps all of the above and runs their hooks
)

#: Every ``OBSERVE_*`` key: the core's and each feature's, one frozen dataclass.
ObserveConfig: type[CoreSettings] = compose(
    "ObserveConfig", [CoreSettings, *(feature.settings for feature in FEATURES)]
)
ObserveConfig.__module__ = __name__
ObserveConfig.__doc__ = (
    "The validated settings of one app. Field ``x`` is config key ``OBSERVE_X``."
)


class Observe:
    """Production observability for a Flask app in one line.

    ``Observe(app)`` or, in an app factory, ``observe = Observe()`` then
    ``observe.init_app(app)``. Settings come from ``OBSERVE_*`` keys in ``app.config``;
    keyword ``options`` (``Observe(log_dir="logs")``) are defaults that ``app.config``
    overrides. See docs/configuration.md for every key, docs/api.md for the methods.

    :param app: the app to set up now, or ``None`` to call :meth:`init_app` later.
    :param options: lower-case setting names without the ``OBSERVE_`` prefix.
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        known = {name.removeprefix("OBSERVE_").lower() for name in config_keys(ObserveConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"Observe() got unknown option(s): {', '.join(unknown)}")
        self._options = options
        #: Registrations made outside any app context before init_app: replayed on each app.
        self._deferred: list[Callable[[Flask], object]] = []
        self._initialised = 0
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the config of ``app``, check every wanted feature, then set them up in order.

        :raises RuntimeError: if ``app`` already has an ``Observe`` instance.
        :raises ConfigError: if a setting is invalid (nothing has been installed then).
        :raises MissingDependencyError: a feature that was asked for lacks its package.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "An 'Observe' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        for name, default in config_keys(ObserveConfig).items():
            option = name.removeprefix("OBSERVE_").lower()
            app.config.setdefault(name, self._options.get(option, default))
        config = load_config(ObserveConfig, app.config)
        service_name = config.service_name or app.name
        identity = {"service": service_name}
        if config.service_version:
            identity["version"] = config.service_version
        if config.environment:
            identity["environment"] = config.environment
        state = ObserveState(
            config=config,
            service_name=service_name,
            auth=Authorizer(config.auth_token, config.auth_callback),
            log_identity=identity,
        )
        if not config.enabled:
            app.extensions[EXTENSION_KEY] = state
            self._initialised += 1
            return
        state.auth = Authorizer.from_config(config, service_name)
        state.closers.append(state.auth.close)
        # Libraries' own variables (OTEL_*, SENTRY_DSN) decide "auto" switches: read once.
        environ = dict(os.environ)
        plan = Plan(config, environ, app)
        wanted = _plan(plan)
        state.excluded = compile_exclusions(_exclusions(config, wanted, plan))
        state.features = tuple(feature.name for feature in wanted)
        app.extensions[EXTENSION_KEY] = state
        wiring = Wiring(app, state, environ)
        try:
            for feature in wanted:
                feature.setup(wiring)
            for register in self._deferred:
                register(app)
        except BaseException:
            state.close()
            del app.extensions[EXTENSION_KEY]
            raise
        self._initialised += 1
        app.cli.add_command(build_cli(FEATURES))

    def shutdown(self, app: Flask) -> None:
        """Undo ``init_app``: remove handlers (flushing files), unwrap, release patches.

        Mostly for tests and for apps created and discarded in one process; a normal process
        exit closes log files on its own.
        """
        state = app.extensions.pop(EXTENSION_KEY, None)
        if state is not None:
            state.close()

    # -- handles -------------------------------------------------------------------------

    @staticmethod
    def handle(kind: type[T], app: Flask | None = None) -> T:
        """The handle of class ``kind`` that a feature set up for ``app`` (default: the
        current app): ``Observe.handle(HealthRunner)``, ``Observe.handle(Metrics, app)``…

        :raises RuntimeError: outside an app context without ``app``, or when the feature
            providing ``kind`` is off for the app (the message says which setting).
        """
        found = current_state(app).get(kind)
        if found is None:
            raise RuntimeError(
                f"no {kind.__qualname__} on this app: the feature providing it is off"
                " (see `flask observe config` and docs/configuration.md)"
            )
        return found

    @staticmethod
    def find(kind: type[T], app: Flask | None = None) -> T | None:
        """Like :meth:`handle`, but ``None`` when the feature providing ``kind`` is off."""
        return current_state(app).get(kind)

    @staticmethod
    def urls(app: Flask | None = None) -> dict[str, str]:
        """The paths flask_observe serves on ``app`` (default: the current app), by name:
        ``health``, ``readiness``, ``liveness``, ``metrics``, ``logviewer``, ``logs_api``…,
        for the features that are on.

        :raises RuntimeError: outside an app context without ``app``, or before ``init_app``.
        """
        return dict(current_state(app).urls)

    @property
    def metrics(self) -> Metrics:
        """The current app's :class:`~flask_observe.metrics.Metrics` (business-metric API).

        :raises RuntimeError: outside an app context, or if metrics are off for the app.
        """
        from .metrics import Metrics

        found = current_state().get(Metrics)
        if found is None:
            raise RuntimeError(
                "metrics are off for this app (OBSERVE_METRICS_ENABLED, or prometheus_client"
                ' is missing: pip install "flask-observe[metrics]")'
            )
        return found

    # -- the shared auth ------------------------------------------------------------------

    @staticmethod
    def protected(view: F) -> F:
        """Decorate a view of your own so it needs the same credentials as flask_observe's
        sensitive endpoints (``OBSERVE_AUTH_TOKEN`` as a bearer token, or your
        ``OBSERVE_AUTH_CALLBACK``): 401 without, 403 with wrong ones, 429 with
        ``Retry-After`` for a client throttled after too many wrong ones.

        >>> @app.get("/admin/debug")
        ... @Observe.protected
        ... def debug(): ...
        """

        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            auth = current_state().auth
            decision = auth.decide()
            if decision.granted:
                return view(*args, **kwargs)
            return auth.deny(decision)

        return guarded  # type: ignore[return-value]

    # -- health and circuit breakers -----------------------------------------------------

    def add_health_check(
        self, check: HealthCheck, *, app: Flask | None = None, replace: bool = False
    ) -> HealthCheck:
        """Register ``check`` on ``app`` (default: the current app).

        Outside any app context and without ``app``, before ``init_app``, the check is kept
        for every app this ``Observe`` initialises afterwards (each gets its own copy). With
        health off on the app, the check is not registered (nothing fails).

        :raises ValueError: a check of that name is registered already (unless ``replace``).
        :raises RuntimeError: outside an app context, without ``app``, after ``init_app``.
        """
        target = self._target(app, "add_health_check()")
        if target is None:
            self._deferred.append(lambda each: add_check(current_state(each), check, copy=True))
            return check
        return add_check(current_state(target), check, replace=replace)

    def health_check(
        self,
        name: str,
        *,
        critical: bool = True,
        timeout: float | None = None,
        groups: Iterable[str] = ("readiness",),
        cache_ttl: float | None = None,
        app: Flask | None = None,
    ) -> Callable[[F], F]:
        """Decorate a function as a health check (see :class:`~flask_observe.health.FunctionCheck`).

        >>> @observe.health_check("search-index", critical=False, timeout=1)
        ... def search_index():
        ...     if index.lag_seconds() > 60:
        ...         return "index more than a minute behind"  # a warning
        """
        from .health.checks import FunctionCheck

        def decorator(func: F) -> F:
            check = FunctionCheck(name, critical, timeout, tuple(groups), cache_ttl, func=func)
            self.add_health_check(check, app=app)
            return func

        return decorator

    def startup_complete(self, app: Flask | None = None) -> None:
        """Mark start-up done: ``/health/startup`` (and readiness) stop waiting for it."""
        target = self._target(app, "startup_complete()", defer=False)
        assert target is not None
        startup_complete(current_state(target))

    def circuit_breaker(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 60.0,
        critical: bool = False,
        exclude: Iterable[Any] = (),
        success_threshold: int = 1,
        health: bool = True,
        app: Flask | None = None,
    ) -> Any:
        """The ``pybreaker.CircuitBreaker`` called ``name`` on ``app`` (made on first call).

        State changes are logged (``flask_observe.breakers``); with ``health``, the state is a
        readiness entry ``<name>:circuitBreaker`` (open: warn, or fail if ``critical``).

        :param fail_max: consecutive failures that open the circuit.
        :param reset_timeout: seconds open before a trial call is let through.
        :param exclude: exception types (or predicates) that are not failures.
        :raises RuntimeError: neither ``app`` nor an app context.
        :raises MissingDependencyError: pybreaker is not installed.
        """
        target = self._target(app, "circuit_breaker()", defer=False)
        assert target is not None
        state = current_state(target)
        registry = state.get(BreakerRegistry)
        if registry is None:
            # Observability off (OBSERVE_ENABLED=False): the host's breakers still work.
            registry = BreakerRegistry()
            state.handles[BreakerRegistry] = registry
        return registry.create(
            name,
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=exclude,
            success_threshold=success_threshold,
            critical=critical,
            health=health,
        )

    # -- alerting ------------------------------------------------------------------------

    def add_alert_rule(self, rule: Rule, *, app: Flask | None = None) -> bool:
        """Evaluate ``rule`` with the app's in-process rules (docs/alerting.md).

        :returns: whether it was added (``False`` when alerting or its rules are off).
        :raises RuntimeError: neither ``app`` nor an app context.
        """
        target = self._target(app, "add_alert_rule()", defer=False)
        assert target is not None
        engine = current_state(target).get(RuleEngine)
        if engine is None:
            return False
        engine.add(rule)
        return True

    def _target(self, app: Flask | None, what: str, defer: bool = True) -> Flask | None:
        """``app``, else the current app; ``None`` when the call may be deferred."""
        if app is not None:
            return app
        if has_app_context():
            return _current_app._get_current_object()  # type: ignore[attr-defined, no-any-return]
        if not defer:
            raise RuntimeError(f"{what} needs app= or an app context")
        if self._initialised:
            raise RuntimeError(
                f"{what} outside an app context, after init_app: pass app=, or call it inside"
                " `with app.app_context():`."
            )
        return None


def _plan(plan: Plan) -> list[Feature]:
    """The wanted features, in order, each checked: raises before anything is installed."""
    wanted = []
    for feature in FEATURES:
        if feature.wanted(plan):
            plan.on.add(feature.name)
            wanted.append(feature)
    for feature in wanted:
        if feature.check is not None:
            feature.check(plan)
    return wanted


def _exclusions(config: CoreSettings, wanted: list[Feature], plan: Plan) -> tuple[str, ...]:
    """``OBSERVE_EXCLUDED_PATHS``, or the paths the wanted features name (health probes,
    ``/metrics``)."""
    if config.excluded_paths is not None:
        return config.excluded_paths
    return tuple(
        pattern
        for feature in wanted
        if feature.excluded_paths is not None
        for pattern in feature.excluded_paths(plan)
    )
