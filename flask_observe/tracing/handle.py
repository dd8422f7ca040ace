"""What tracing set up for one app (its handle), and its bounded shutdown."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import Tracer, TracerProvider

from .._internal import FailureLog, exit_flushes, run_with_deadline

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

    from .pipeline import ObserveSpanProcessor, ProcessLocalExporter

__all__ = ["HOOK_POINTS", "TracingSetup"]

logger = logging.getLogger("flask_observe.tracing")

#: Where user hooks run, and what each is called with (the instrumentations' own hooks'
#: arguments; ``query`` has SQLAlchemy's ``after_cursor_execute`` arguments).
HOOK_POINTS = {
    "request": "hook(span, environ): the Flask server span, when the request starts",
    "response": "hook(span, status, response_headers): the Flask server span, at the response",
    "client_request": "hook(span, request): a requests client span, before it is sent",
    "client_response": "hook(span, request, response): a requests client span, at the answer",
    "query": "hook(span, conn, cursor, statement, parameters, context): an SQL span, after it ran",
}


class TracingSetup:
    """What tracing set up for one app: ``Observe.handle(TracingSetup, app)``.

    :param provider: records this app's spans (ours, or the host's own).
    :param processor: our batch processor, ``None`` when exporting nothing or when the host's
        provider is used.
    """

    def __init__(
        self,
        provider: TracerProvider,
        *,
        exporter_name: str,
        owned: bool,
        processor: ObserveSpanProcessor | None,
        exporter: ProcessLocalExporter | None,
        shutdown_timeout: float,
    ) -> None:
        self.provider = provider
        self.exporter_name = exporter_name
        self.owned = owned
        self.processor = processor
        self.exporter = exporter
        self.shutdown_timeout = shutdown_timeout
        self._tracers: dict[Any, Tracer] = {}
        self._closed = False
        self._lock = threading.Lock()
        self._hooks: dict[str, tuple[Callable[..., object], ...]] = dict.fromkeys(HOOK_POINTS, ())
        self._hook_failures = FailureLog()
        #: The service.instance.id flask_observe made for the resource (refreshed after a fork).
        self.made_instance_id: str | None = None

    # -- user hooks ---------------------------------------------------------------------

    def add_hook(self, point: str, hook: Callable[..., object]) -> Callable[..., object]:
        """Run ``hook`` at ``point`` from now on, after flask_observe's own (points and their
        arguments: :data:`HOOK_POINTS`). A hook that raises is logged (at most once a minute)
        and the request goes on. Returns ``hook``.

        :raises ValueError: an unknown point.
        """
        if point not in HOOK_POINTS:
            raise ValueError(f"unknown hook point {point!r}; known: {', '.join(HOOK_POINTS)}")
        with self._lock:
            if hook not in self._hooks[point]:
                self._hooks[point] = (*self._hooks[point], hook)
        return hook

    def remove_hook(self, point: str, hook: Callable[..., object]) -> None:
        """Stop running ``hook`` at ``point`` (nothing happens if it was not added)."""
        with self._lock:
            self._hooks[point] = tuple(h for h in self._hooks.get(point, ()) if h != hook)

    def hooks(self, point: str) -> tuple[Callable[..., object], ...]:
        return self._hooks[point]

    def run_hooks(self, point: str, *args: Any) -> None:
        """Call each hook of ``point``, guarded."""
        for hook in self._hooks[point]:
            try:
                hook(*args)
            except Exception:
                self._hook_failures(f"tracing {point} hook {getattr(hook, '__qualname__', hook)}")

    # -- more span processors ----------------------------------------------------------

    def add_span_processor(self, processor: SpanProcessor) -> bool:
        """Give every span of this app to ``processor`` as well (beside the exporter's
        processor): flask_observe's console stores them this way. Only on the provider
        flask_observe made; the host's own provider is the host's to change.

        :returns: whether it was added (``False`` with the host's provider, or after shutdown).
        """
        if not self.owned or self._closed or not isinstance(self.provider, SdkTracerProvider):
            return False
        self.provider.add_span_processor(processor)
        return True

    # -- the resource ------------------------------------------------------------------

    def after_fork(self) -> None:
        """In a forked child: the child's own ``process.pid`` (and ``service.instance.id``,
        where flask_observe made it) on every span from now on."""
        provider = self.provider
        update = getattr(provider, "_update_resource", None)
        if not self.owned or update is None:
            return
        from opentelemetry.sdk.resources import Resource

        from .conventions import instance_id

        attributes: Mapping[str, Any] = getattr(provider, "resource", Resource({})).attributes
        changed: dict[str, Any] = {"process.pid": os.getpid()}
        if self.made_instance_id and attributes.get("service.instance.id") == self.made_instance_id:
            changed["service.instance.id"] = self.made_instance_id = instance_id()
        update(Resource(changed))

    def tracer(self, key: tuple[str, str | None, str | None], attributes: Any = None) -> Tracer:
        """This app's tracer for an instrumentation scope (cached)."""
        tracer = self._tracers.get(key)
        if tracer is None:
            tracer = self.provider.get_tracer(key[0], key[1], key[2], attributes)
            self._tracers[key] = tracer
        return tracer

    def stats(self) -> dict[str, int | None]:
        """Spans ``queued`` for export, ``dropped`` (queue full), ``exported`` and
        ``export_failed`` since start; ``None`` where not known."""
        processor, exporter = self.processor, self.exporter
        return {
            "queued": processor.queued() if processor is not None else None,
            "queue_capacity": processor.capacity if processor is not None else None,
            "dropped": processor.dropped if processor is not None else None,
            "exported": exporter.exported if exporter is not None else None,
            "export_failed": exporter.failed if exporter is not None else None,
        }

    def shutdown(self) -> bool:
        """Export what is queued and stop, waiting at most ``shutdown_timeout`` seconds.

        The SDK's own shutdown waits up to 30 s for a collector that does not answer; our
        batch processor waits ``shutdown_timeout``, then shuts the exporter down, cancelling a
        stuck export. It all runs in a daemon thread, abandoned at the deadline should anything
        else (a span processor the host added) hang. The host's provider is not ours to shut
        down. Safe to call twice.

        :returns: whether everything was exported.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        if not self.owned or not isinstance(self.provider, SdkTracerProvider):
            return True
        provider, exporter = self.provider, self.exporter
        failed_before = exporter.unsent()[0] if exporter is not None else 0
        # At process exit, every flush shares one deadline: wait only what is left of it.
        wait = exit_flushes.remaining(self.shutdown_timeout)
        if self.processor is not None:
            # The batch processor's own wait, a little under ours: it then shuts the exporter
            # down (cancelling a stuck export) and we still count what was lost.
            self.processor.shutdown_timeout = max(0.0, wait - 0.1)
        finished = run_with_deadline(provider.shutdown, wait, "tracing-shutdown")
        lost = 0
        if self.processor is not None:
            lost += self.processor.queued() or 0
        if exporter is not None:
            failed, in_flight = exporter.unsent()
            lost += failed - failed_before + in_flight
        if lost or not finished:
            logger.warning(
                "flask_observe: %d spans were not exported at shutdown (collector slow or"
                " unreachable; waited %.1f s)",
                lost,
                wait,
                extra=self.stats(),
            )
        return finished and not lost
