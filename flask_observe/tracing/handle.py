"""What tracing set up for one app (its handle), and its bounded shutdown."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import Tracer, TracerProvider

from .._internal import exit_flushes, run_with_deadline

if TYPE_CHECKING:
    from .pipeline import ObserveSpanProcessor, ProcessLocalExporter

__all__ = ["TracingSetup"]

logger = logging.getLogger("flask_observe.tracing")


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
