"""Circuit breakers: pybreaker's, named per app, their state changes logged (and, by the health
feature, seen in health).

``observe.circuit_breaker("platform-api", fail_max=5, reset_timeout=30)`` returns a
``pybreaker.CircuitBreaker`` (use it as pybreaker documents: ``breaker.call(f, …)`` or as a
decorator). This module only wires it: a listener logs each state change and tells the
registry's listeners; the health feature shows each breaker's state as a check.

pybreaker holds the breaker's lock for the whole guarded call, so calls through one breaker
run one at a time (upstream issue danielfm/pybreaker#55); keep guarded calls short, with
timeouts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .. import _optional
from .._internal import FailureLog

__all__ = ["BreakerRegistry", "breaker_check_name"]

logger = logging.getLogger("flask_observe.breakers")

#: ``listener(breaker_name, old_state, new_state)``; states are pybreaker's strings.
StateListener = Callable[[str, str, str], None]
#: ``listener(breaker, options)`` for each breaker made; ``options`` holds ``critical`` and
#: ``health`` as given to :meth:`BreakerRegistry.create`.
CreationListener = Callable[[Any, dict[str, Any]], None]


class BreakerRegistry:
    """The circuit breakers of one app: ``Observe.handle(BreakerRegistry, app)``.

    Other features read it: :meth:`all` for each breaker's state, :meth:`add_listener` to hear
    every state change of every breaker (present and future), :meth:`on_create` to hear of
    every breaker made (present and future).
    """

    def __init__(self) -> None:
        self._breakers: dict[str, Any] = {}
        self._listeners: list[StateListener] = []
        self._creation_listeners: list[CreationListener] = []
        self._options: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._failures = FailureLog()

    def create(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 60.0,
        exclude: Iterable[Any] = (),
        success_threshold: int = 1,
        critical: bool = False,
        health: bool = True,
    ) -> Any:
        """The breaker called ``name``, made on first use (later calls return the same one).

        :param critical: an open circuit fails readiness (else it warns).
        :param health: show the breaker's state in health.
        :raises MissingDependencyError: pybreaker is not installed.
        """
        pybreaker = _optional.require("pybreaker", "breakers", "observe.circuit_breaker")
        with self._lock:
            breaker = self._breakers.get(name)
            made = breaker is None
            if breaker is None:
                breaker = pybreaker.CircuitBreaker(
                    fail_max=fail_max,
                    reset_timeout=reset_timeout,
                    exclude=list(exclude),
                    success_threshold=success_threshold,
                    name=name,
                    listeners=[_listener(self, pybreaker.CircuitBreakerListener)],
                )
                self._breakers[name] = breaker
                self._options[name] = {"critical": critical, "health": health}
            listeners = list(self._creation_listeners) if made else []
        for listener in listeners:
            self._tell(listener, breaker, self._options[name])
        return breaker

    def on_create(self, listener: CreationListener) -> None:
        """Call ``listener(breaker, options)`` for every breaker, those made already included."""
        with self._lock:
            self._creation_listeners.append(listener)
            made = [(b, self._options[n]) for n, b in self._breakers.items()]
        for breaker, options in made:
            self._tell(listener, breaker, options)

    def _tell(self, listener: CreationListener, breaker: Any, options: dict[str, Any]) -> None:
        try:
            listener(breaker, options)
        except Exception:
            self._failures("a circuit breaker creation listener")

    def get(self, name: str) -> Any | None:
        return self._breakers.get(name)

    def all(self) -> dict[str, Any]:
        """Every breaker of the app by name."""
        with self._lock:
            return dict(self._breakers)

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(name, old_state, new_state)`` on each state change."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: StateListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _changed(self, breaker: Any, old: str, new: str) -> None:
        fields = {
            "breaker": breaker.name,
            "old_state": old,
            "new_state": new,
            "fail_counter": breaker.fail_counter,
            "fail_max": breaker.fail_max,
            "reset_timeout": breaker.reset_timeout,
        }
        level = logging.WARNING if new == "open" else logging.INFO
        logger.log(level, "circuit breaker %s: %s -> %s", breaker.name, old, new, extra=fields)
        for listener in list(self._listeners):
            try:
                listener(breaker.name, old, new)
            except Exception:
                self._failures("a circuit breaker listener")


def _listener(registry: BreakerRegistry, base: type) -> Any:
    """A pybreaker listener forwarding state changes to ``registry`` (pybreaker imported late)."""

    class StateChangeListener(base):  # type: ignore[misc]
        def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
            old = old_state.name if old_state is not None else "none"
            if old != new_state.name:
                registry._changed(cb, old, new_state.name)

    return StateChangeListener()


def breaker_check_name(name: str) -> str:
    """The health check name of breaker ``name`` (its entry is keyed by the breaker's name)."""
    return f"{name}-breaker"
