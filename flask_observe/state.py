"""What :class:`~flask_observe.Observe` set up for one app, in ``app.extensions["observe"]``.

A leaf of the core: it names no feature. Features keep their handles in it by class
(``state.get(Metrics)``), and register what undoes them; :func:`current_state` is the one way
to find the state of the current app.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app
from flask.globals import _cv_app

if TYPE_CHECKING:
    from ._ticker import Ticker
    from .auth import Authorizer
    from .config import CoreSettings

__all__ = ["EXTENSION_KEY", "ObserveState", "current_state", "state_or_none"]

#: Where the state lives in ``app.extensions``.
EXTENSION_KEY = "observe"

T = TypeVar("T")


@dataclass
class ObserveState:
    """The per-app state: its settings, identity, auth, and each feature's handle."""

    #: Every setting of the app (an ``ObserveConfig``).
    config: CoreSettings
    service_name: str
    #: Grants access to the sensitive endpoints (health details, log viewer, …).
    auth: Authorizer
    #: ``service`` (and ``version``/``environment``) fields of this app's log lines.
    log_identity: Mapping[str, Any] = field(default_factory=dict)
    #: The shared exclusion predicate on the request path (access log, tracing, metrics).
    excluded: Callable[[str], bool] | None = None
    #: Names of the features that are on, in set-up order.
    features: tuple[str, ...] = ()
    #: The pages and endpoints the features serve, by name (``Observe.urls``).
    urls: dict[str, str] = field(default_factory=dict)
    #: The app's background ticker, when a feature asked for one.
    ticker: Ticker | None = None
    #: Each feature's handle by class (``Metrics``, ``HealthRunner``, …).
    handles: dict[type, object] = field(default_factory=dict, repr=False)
    #: What undoes the set-up, run last first by :meth:`close`.
    closers: list[Callable[[], object]] = field(default_factory=list, repr=False)

    def get(self, kind: type[T]) -> T | None:
        """The handle of class ``kind``, or ``None`` when the feature providing it is off."""
        return self.handles.get(kind)  # type: ignore[return-value]

    def close(self) -> None:
        """Undo what was set up, last first; safe to call twice."""
        while self.closers:
            self.closers.pop()()


def current_state(app: Flask | None = None) -> ObserveState:
    """The state of ``app`` (default: the current app).

    :raises RuntimeError: outside an app context without ``app``, or if ``Observe`` was not
        initialised on that app.
    """
    target = app if app is not None else current_app
    try:
        return target.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError(
            "flask_observe is not initialised on this app: call Observe(app) or"
            " observe.init_app(app) first."
        ) from None


def state_or_none() -> ObserveState | None:
    """The state of the current app, or ``None`` outside an app context or without Observe.

    For code on hot paths and in background threads: read through Flask's context variable
    (cheaper than the ``current_app`` proxy), never raises.
    """
    ctx = _cv_app.get(None)
    if ctx is None:
        return None
    return ctx.app.extensions.get(EXTENSION_KEY)
