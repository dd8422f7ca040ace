"""The contract every feature follows, and what a feature may touch while it sets up.

A feature is a package with a ``FEATURE`` (a :class:`Feature`) in its ``setup`` module. The
extension keeps them in one ordered tuple and initialises an app in two passes:

1. **plan** — for each feature, in order: ``wanted(plan)`` (on, off, or auto-detected from
   the environment, decided with :func:`switch`), then ``check(plan)`` for the wanted ones:
   every configuration and dependency error is raised here, before anything is installed;
2. **setup** — ``setup(wiring)`` for each wanted feature, in order. The :class:`Wiring` is
   all a feature may touch: its settings, the app, closers run at shutdown, request hooks by
   :class:`~flask_observe.hooks.Stage`, the app's one background ticker, and the handles of
   the features set up before it (``wiring.get(Metrics)``).

A feature imports the core and, where data truly flows that way, a feature set up before it;
never the extension (tests/test_architecture.py enforces it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from . import _optional
from ._internal import exit_flushes
from .hooks import Hook, OutboundHook, Stage

if TYPE_CHECKING:
    import click
    from flask import Flask

    from ._ticker import Ticker
    from .state import ObserveState

__all__ = ["Feature", "Plan", "Wiring", "switch"]

logger = logging.getLogger("flask_observe")

T = TypeVar("T")


def _always(plan: Plan) -> bool:
    return True


@dataclass(frozen=True)
class Feature:
    """One feature of flask_observe.

    :param name: short name (``"metrics"``), used in logs and errors.
    :param settings: the frozen dataclass of the feature's ``OBSERVE_*`` keys (no fields:
        ``NoSettings``).
    :param setup: installs the feature; may only touch what the :class:`Wiring` offers.
    :param wanted: whether the feature is on for this app (no side effects but importing an
        optional package); default: always.
    :param check: raises :class:`~flask_observe.ConfigError` or
        :class:`~flask_observe._optional.MissingDependencyError` for anything wrong with the
        feature's settings or dependencies; no side effects.
    :param excluded_paths: the path patterns the feature serves that stay out of the access
        log, traces and metrics unless ``OBSERVE_EXCLUDED_PATHS`` says otherwise.
    :param commands: the feature's ``flask observe`` subcommands (always listed: a command of
        a feature that is off says why).
    """

    name: str
    settings: type
    setup: Callable[[Wiring], None]
    wanted: Callable[[Plan], bool] = _always
    check: Callable[[Plan], None] | None = None
    excluded_paths: Callable[[Plan], Sequence[str]] | None = None
    commands: Callable[[], Sequence[click.Command]] | None = None


@dataclass(frozen=True)
class NoSettings:
    """The settings of a feature that has no keys of its own."""


@dataclass
class Plan:
    """What ``wanted`` and ``check`` see: the app's settings and environment, read-only.

    :param config: every setting of the app (read a feature's with :meth:`settings`).
    :param environ: the process environment, read once (libraries' own variables such as
        ``OTEL_*`` and ``SENTRY_DSN`` decide "auto" switches).
    :param app: the app being set up (to look at, not to change).
    """

    config: Any
    environ: Mapping[str, str]
    app: Flask
    #: Names of the features found wanted so far (those before the one asking).
    on: set[str] = field(default_factory=set)

    def settings(self, kind: type[T]) -> T:
        """The app's settings as ``kind`` (a feature's settings class)."""
        return _as(self.config, kind)


def _as(config: Any, kind: type[T]) -> T:
    if not isinstance(config, kind):
        raise TypeError(f"{kind.__qualname__} is not a part of this app's configuration")
    return config


def switch(
    setting: bool | None,
    key: str,
    module: str,
    extra: str,
    *,
    auto: bool | str = True,
    what: str | None = None,
) -> bool:
    """The one on/off/auto decision of a feature that needs an optional package.

    - ``setting`` ``True``: on; ``module`` must import, else
      :class:`~flask_observe._optional.MissingDependencyError` names ``key`` and the extra;
    - ``False``: off;
    - ``None`` (auto): off when ``auto`` is ``False``. When ``auto`` is a reason (``"SENTRY_DSN
      is set"``) the environment asks for the feature: a missing package is said once at
      WARNING, naming the extra to install, and the feature stays off. When ``auto`` is
      ``True`` (on whenever the package is installed), a missing package is said at DEBUG.

    :param what: the feature's name in messages (default: ``key``).
    """
    if setting is False:
        return False
    if setting:
        _optional.require(module, extra, key)
        return True
    if auto is False:
        return False
    name = what or key
    if isinstance(auto, str):
        return _optional.detect(module, f"{name} ({auto})", extra=extra, loud=True) is not None
    return _optional.detect(module, name, extra=extra) is not None


class Wiring:
    """What a feature may touch while it sets up one app.

    :param app: the app.
    :param state: the app's state (``app.extensions["observe"]``), filled as features set up.
    :param environ: the process environment, read once.
    """

    def __init__(self, app: Flask, state: ObserveState, environ: Mapping[str, str]) -> None:
        self.app = app
        self.state = state
        self.environ = environ
        self._hooks: dict[Stage, list[Hook]] = {stage: [] for stage in Stage}
        self._hooks_taken = False
        self._outbound: list[OutboundHook] = []
        #: Whether a hook reads :attr:`~flask_observe.hooks.RequestRecord.trace_id`.
        self.trace_ids_wanted = False

    # -- settings and identity -----------------------------------------------------------

    @property
    def config(self) -> Any:
        """Every setting of the app; prefer :meth:`settings` for a typed view."""
        return self.state.config

    def settings(self, kind: type[T]) -> T:
        """The app's settings as ``kind``: the feature's own settings class, or that of a
        feature set up before it."""
        return _as(self.state.config, kind)

    @property
    def service_name(self) -> str:
        return self.state.service_name

    # -- handles -------------------------------------------------------------------------

    def provide(self, handle: object) -> None:
        """Make ``handle`` reachable by later features, the public API and the CLI, by its
        class (``wiring.get(type(handle))``)."""
        self.state.handles[type(handle)] = handle

    def publish_url(self, name: str, path: str) -> None:
        """Tell users (``Observe.urls``, the sample app's start-up banner) where the feature
        serves something: ``wiring.publish_url("metrics", "/metrics")``."""
        self.state.urls[name] = path

    def get(self, kind: type[T]) -> T | None:
        """The handle of class ``kind`` a feature set up before this one provided, or
        ``None`` (that feature is off)."""
        return self.state.get(kind)

    # -- life cycle ----------------------------------------------------------------------

    def on_close(self, closer: Callable[[], object]) -> None:
        """Run ``closer`` when the app's observability shuts down (last registered, first run)."""
        self.state.closers.append(closer)

    def at_exit(self, flush: Callable[[], object], timeout: float) -> None:
        """Run ``flush`` at process exit, beside every other feature's (the waits overlap),
        bounded by ``timeout`` seconds; forgotten again at shutdown."""
        exit_key = exit_flushes.add(flush, timeout)
        self.on_close(lambda: exit_flushes.remove(exit_key))

    @property
    def ticker(self) -> Ticker:
        """The app's one background ticker (made on first use, started by the first request
        in each process, stopped at shutdown): ``wiring.ticker.add(name, task)``."""
        ticker = self.state.ticker
        if ticker is None:
            from ._ticker import Ticker

            interval = float(self.state.config.sample_interval_seconds)
            ticker = self.state.ticker = Ticker(interval)
            self.on_close(ticker.close)
        return ticker

    # -- the request path ----------------------------------------------------------------

    def request_hook(self, stage: Stage, hook: Hook) -> None:
        """Call ``hook(record)`` for each request, at ``stage``.

        :raises RuntimeError: the request middleware was built already (the feature comes
            after the correlation feature in ``FEATURES``; move it before).
        """
        if self._hooks_taken:
            raise RuntimeError(
                "request hooks must be registered by features set up before the correlation"
                " feature (it builds the one request middleware): move the feature before it"
                " in FEATURES"
            )
        self._hooks[stage].append(hook)

    def outbound_hook(self, hook: OutboundHook) -> None:
        """Call ``hook(call)`` after each outgoing ``requests`` call made in this app's context
        (outbound metrics); the correlation feature's wrapper of the adapter times the call.

        :raises RuntimeError: as :meth:`request_hook`, from a feature after correlation.
        """
        if self._hooks_taken:
            raise RuntimeError(
                "outbound hooks must be registered by features set up before the correlation"
                " feature: move the feature before it in FEATURES"
            )
        self._outbound.append(hook)

    def take_outbound_hooks(self) -> list[OutboundHook]:
        """Every outbound hook (for the ``requests`` wrapper)."""
        return list(self._outbound)

    def want_trace_ids(self) -> None:
        """Fill each request's ``RecordRequest.trace_id`` (the server span's trace ID, looked
        up when the response starts) for a hook that reads it (metrics exemplars)."""
        self.trace_ids_wanted = True

    def take_hooks(self) -> dict[Stage, list[Hook]]:
        """Every request hook by stage (for the request middleware; once)."""
        self._hooks_taken = True
        return {stage: list(hooks) for stage, hooks in self._hooks.items()}
