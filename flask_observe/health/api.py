"""The health and circuit-breaker side of ``Observe``: its methods and its setup step."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app, has_app_context

from .checks import HealthCheck

if TYPE_CHECKING:
    from ..extension import ObserveState

__all__ = ["HealthAPI", "setup_health"]

logger = logging.getLogger("flask_observe")

F = TypeVar("F", bound=Callable[..., Any])


class HealthAPI:
    """Mixed into :class:`~flask_observe.Observe`."""

    _pending_checks: list[HealthCheck]
    _initialised: int

    @staticmethod
    def state(app: Flask | None = None) -> ObserveState:
        raise NotImplementedError

    # -- health and circuit breakers ------------------------------------------------------

    def add_health_check(
        self, check: HealthCheck, *, app: Flask | None = None, replace: bool = False
    ) -> HealthCheck:
        """Register ``check`` on ``app`` (default: the current app).

        Outside any app context and without ``app``, the check is kept for every app this
        ``Observe`` initialises afterwards (each gets its own copy). With health off on the
        app, the check is not registered (nothing fails).

        :raises ValueError: a check of that name is registered already (unless ``replace``).
        """
        target = _target_app(app)
        if target is None:
            if self._initialised:
                raise RuntimeError(
                    "add_health_check() outside an app context, after init_app: pass app=,"
                    " or call it inside `with app.app_context():`."
                )
            self._pending_checks.append(check)
            return check
        runner = self.state(target).health
        if runner is None:
            logger.debug("health is off on %s: check %r not registered", target.name, check.name)
            return check
        return runner.add(check, replace=replace)

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
        from .checks import FunctionCheck

        def decorator(func: F) -> F:
            check = FunctionCheck(name, critical, timeout, tuple(groups), cache_ttl, func=func)
            self.add_health_check(check, app=app)
            return func

        return decorator

    def startup_complete(self, app: Flask | None = None) -> None:
        """Mark start-up done: ``/health/startup`` (and readiness) stop waiting for it."""
        target = _target_app(app)
        if target is None:
            raise RuntimeError("startup_complete() needs app= or an app context")
        runner = self.state(target).health
        if runner is not None:
            runner.mark_started()

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
        """
        target = _target_app(app)
        if target is None:
            raise RuntimeError("circuit_breaker() needs app= or an app context")
        state = self.state(target)
        breaker = state.breakers.create(
            name,
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=exclude,
            success_threshold=success_threshold,
        )
        if health and state.health is not None:
            from ..breakers import BreakerCheck, breaker_check_name

            check_name = breaker_check_name(name)
            if state.health.get(check_name) is None:
                state.health.add(BreakerCheck(check_name, critical=critical, breaker=breaker))
        return breaker


def _target_app(app: Flask | None) -> Flask | None:
    if app is not None:
        return app
    if has_app_context():
        return current_app._get_current_object()  # type: ignore[attr-defined, no-any-return]
    return None


def setup_health(app: Flask, state: ObserveState, pending: list[HealthCheck]) -> None:
    from .report import Identity
    from .runner import HealthRunner
    from .views import health_blueprint

    config = state.config
    runner = HealthRunner(
        app,
        cache_ttl=config.health_cache_ttl,
        default_timeout=config.health_default_timeout,
        wait_for_startup=config.health_wait_for_startup,
    )
    state.health = runner
    state._closers.append(runner.close)
    for check in pending:
        runner.add(dataclasses.replace(check))
    state.health_identity = Identity(
        service_id=state.service_name,
        version=config.service_version,
        release_id=config.health_release_id or config.service_version,
        description=config.health_description or f"health of {state.service_name}",
    )
    app.register_blueprint(
        health_blueprint(
            runner,
            state.health_identity,
            state.auth,
            url_prefix=config.health_url_prefix,
            public_details=config.health_public_details,
        )
    )
