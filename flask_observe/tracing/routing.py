"""One tracer provider per app, in a process where the instrumented libraries are shared.

``requests``, SQLAlchemy, Celery and Redis are instrumented once per process, each with one
tracer provider. Two apps in one process (the sample scraper and its demo platform; every
test) each have their own provider, with their own ``service.name`` and exporter. The
:class:`RoutingTracerProvider` given to those instrumentations hands out tracers that start
each span with the provider of the app whose context is current, so a query run by the
platform is the platform's span and a query run by the scraper the scraper's.

Outside any app context (a Celery task's own span, a background thread) spans go to the
first app that turned tracing on and is still running — in a normal process, the only one.
An app without tracing records nothing.

The router is also installed as the global tracer provider when the host has not installed
one, so ``opentelemetry.trace.get_tracer(__name__)`` in the host's code follows the same rule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from flask.globals import _cv_app
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Tracer, TracerProvider
from opentelemetry.util._decorator import _agnosticcontextmanager
from opentelemetry.util.types import Attributes

from ..state import EXTENSION_KEY
from .handle import TracingSetup

__all__ = ["RoutingTracerProvider", "router"]

_NOOP = trace.NoOpTracer()
_TracerKey = tuple[str, str | None, str | None]


class RoutingTracerProvider(TracerProvider):
    """Tracers that follow the current app (see the module's docstring).

    :param lookup: the tracing setup of the current app context: ``(True, setup or None)``
        inside an app context, ``(False, None)`` outside one.
    """

    def __init__(self, lookup: Callable[[], tuple[bool, TracingSetup | None]]) -> None:
        self._lookup = lookup
        self._lock = threading.Lock()
        self.live: list[TracingSetup] = []

    def register(self, setup: TracingSetup) -> None:
        with self._lock:
            self.live.append(setup)

    def unregister(self, setup: TracingSetup) -> None:
        with self._lock:
            if setup in self.live:
                self.live.remove(setup)

    def current(self) -> TracingSetup | None:
        """The setup whose provider records a span started now."""
        in_app, setup = self._lookup()
        if in_app:
            return setup
        live = self.live
        return live[0] if live else None

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> Tracer:
        key = (instrumenting_module_name, instrumenting_library_version, schema_url)
        return RoutedTracer(self, key, attributes)


class RoutedTracer(Tracer):
    """Starts each span with the current app's tracer of the same name."""

    def __init__(self, router: RoutingTracerProvider, key: _TracerKey, attributes: Any) -> None:
        self._router = router
        self._key = key
        self._attributes = attributes

    def _target(self) -> Tracer:
        setup = self._router.current()
        if setup is None:
            return _NOOP
        return setup.tracer(self._key, self._attributes)

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        return self._target().start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        # A generator, like the API's ProxyTracer: used as a decorator, the target is chosen
        # at each call of the decorated function, not once when it was decorated.
        with self._target().start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


def _lookup_current_app() -> tuple[bool, TracingSetup | None]:
    ctx = _cv_app.get(None)
    if ctx is None:
        return False, None
    state = ctx.app.extensions.get(EXTENSION_KEY)
    return True, (state.get(TracingSetup) if state is not None else None)


# Process-wide by nature, like the root logger's handlers: the instrumented libraries are
# patched once per process and need one provider to ask.
_router: RoutingTracerProvider | None = None
_router_lock = threading.Lock()


def router() -> RoutingTracerProvider:
    """The process's router, created on first use."""
    global _router
    with _router_lock:
        if _router is None:
            _router = RoutingTracerProvider(_lookup_current_app)
        return _router


def host_provider() -> TracerProvider | None:
    """The tracer provider the host installed globally, if any (ours does not count)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, RoutingTracerProvider)):
        return None
    return provider


def install_global(routing: RoutingTracerProvider) -> None:
    """Make the router the global provider, unless one is installed already."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(routing)
