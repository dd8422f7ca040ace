"""Tracing for one app: its provider, exporter, instrumentations, and their undoing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import Tracer, TracerProvider

from .._internal import exit_flushes, run_with_deadline
from ..config import TRACING_INSTRUMENTATIONS
from . import choose_exporter
from .instrument import acquire_shared, instrument_flask, instrument_flask_sqlalchemy_engines
from .pipeline import (
    ObserveSampler,
    ObserveSpanProcessor,
    ProcessLocalExporter,
    build_resource,
    exporter_factory,
    ratio_sampler,
)
from .routing import host_provider, install_global, router

if TYPE_CHECKING:
    from ..extension import ObserveState

__all__ = ["TracingSetup", "setup_tracing"]

logger = logging.getLogger("flask_observe.tracing")


class TracingSetup:
    """What tracing set up for one app: ``Observe.state(app).tracing``.

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
        finished = run_with_deadline(
            provider.shutdown, self.shutdown_timeout + 0.25, "tracing-shutdown"
        )
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
                self.shutdown_timeout,
                extra=self.stats(),
            )
        return finished and not lost


def _sampler(state: ObserveState, provider: SdkTracerProvider) -> ObserveSampler:
    config = state.config
    # With no rate configured, the provider's own sampler is the one the SDK chose from
    # OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: parent-based, always on).
    inner = (
        ratio_sampler(config.tracing_sample_rate)
        if config.tracing_sample_rate is not None
        else provider.sampler
    )
    return ObserveSampler(inner, state.excluded, config.tracing_root_client_spans)


def setup_tracing(
    app: Flask, state: ObserveState, environ: Mapping[str, str]
) -> tuple[TracingSetup, list[Callable[[], object]]]:
    """Turn tracing on for ``app``; returns the setup and its undo steps (in order to run)."""
    config = state.config
    routing = router()
    host = host_provider()
    exporter_name = choose_exporter(config.tracing_exporter, config.tracing_endpoint, environ)
    processor: ObserveSpanProcessor | None = None
    exporter: ProcessLocalExporter | None = None
    provider: TracerProvider
    if host is not None:
        logger.info(
            "flask_observe: using the TracerProvider the host installed (its sampler and"
            " exporters; OBSERVE_TRACING_EXPORTER/ENDPOINT/SAMPLE_RATE are not applied)"
        )
        provider = host
    else:
        resource = build_resource(
            config.service_name, state.service_name, config.service_version, config.environment
        )
        sdk_provider = SdkTracerProvider(resource=resource, shutdown_on_exit=False)
        # Set before any tracer exists: tracers take the provider's sampler when created.
        sdk_provider.sampler = _sampler(state, sdk_provider)
        factory = exporter_factory(exporter_name, config.tracing_endpoint)
        if factory is not None:
            exporter = ProcessLocalExporter(factory, redact=config.tracing_redact)
            processor = ObserveSpanProcessor(exporter, config.tracing_shutdown_timeout)
            exporter.after_export = processor.report_drops
            sdk_provider.add_span_processor(processor)
        provider = sdk_provider
    setup = TracingSetup(
        provider,
        exporter_name=exporter_name if host is None else "host",
        owned=host is None,
        processor=processor,
        exporter=exporter,
        shutdown_timeout=config.tracing_shutdown_timeout,
    )
    undo: list[Callable[[], object]] = []
    try:
        routing.register(setup)
        undo.append(lambda: routing.unregister(setup))
        install_global(routing)
        if setup.owned:
            exit_key = exit_flushes.add(setup.shutdown, setup.shutdown_timeout)
            undo.append(setup.shutdown)
            undo.append(lambda: exit_flushes.remove(exit_key))
        wanted = config.tracing_instrumentations
        # The default list means "whatever is installed"; a list set by hand is a demand.
        explicit = wanted != TRACING_INSTRUMENTATIONS
        if "flask" in wanted:
            unwrap = instrument_flask(app, provider, response_header=config.tracing_response_header)
            if unwrap is not None:
                undo.append(unwrap)
        for name in ("requests", "sqlalchemy", "celery", "redis"):
            if name in wanted:
                release = acquire_shared(name, routing, required=explicit)
                if release is not None:
                    undo.append(release)
        if "sqlalchemy" in wanted and "sqlalchemy" in app.extensions:
            instrument_flask_sqlalchemy_engines(app, routing)
    except BaseException:
        for step in reversed(undo):
            step()
        raise
    undo.reverse()
    return setup, undo
