"""Tracing for one app: its provider, exporter, instrumentations, and their undoing."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import TracerProvider

from .._internal import exit_flushes
from ..config import CoreSettings
from . import choose_exporter
from .conventions import apply_semconv, detected_resource, semconv_choice
from .handle import TracingSetup
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
from .settings import TRACING_INSTRUMENTATIONS, TracingSettings

if TYPE_CHECKING:
    from ..feature import Wiring

__all__ = ["setup_tracing"]

logger = logging.getLogger("flask_observe.tracing")


def _sampler(wiring: Wiring, provider: SdkTracerProvider) -> ObserveSampler:
    config = wiring.settings(TracingSettings)
    # With no rate configured, the provider's own sampler is the one the SDK chose from
    # OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: parent-based, always on).
    inner = (
        ratio_sampler(config.tracing_sample_rate)
        if config.tracing_sample_rate is not None
        else provider.sampler
    )
    return ObserveSampler(inner, wiring.state.excluded, config.tracing_root_client_spans)


def setup_tracing(wiring: Wiring) -> tuple[TracingSetup, list[Callable[[], object]]]:
    """Turn tracing on for the app; returns the setup and its undo steps (in order to run)."""
    app, environ = wiring.app, wiring.environ
    config = wiring.settings(TracingSettings)
    core = wiring.settings(CoreSettings)
    routing = router()
    host = host_provider()
    exporter_name = choose_exporter(config.tracing_exporter, config.tracing_endpoint, environ)
    processor: ObserveSpanProcessor | None = None
    exporter: ProcessLocalExporter | None = None
    provider: TracerProvider
    made_instance_id: str | None = None
    if host is not None:
        logger.info(
            "flask_observe: using the TracerProvider the host installed (its sampler and"
            " exporters; OBSERVE_TRACING_EXPORTER/ENDPOINT/SAMPLE_RATE are not applied)"
        )
        provider = host
    else:
        detected = detected_resource(environ)
        resource = build_resource(
            core.service_name,
            wiring.service_name,
            core.service_version,
            core.environment,
            detected,
        )
        if resource.attributes.get("service.instance.id") == detected["service.instance.id"]:
            made_instance_id = str(detected["service.instance.id"])
        sdk_provider = SdkTracerProvider(resource=resource, shutdown_on_exit=False)
        # Set before any tracer exists: tracers take the provider's sampler when created.
        sdk_provider.sampler = _sampler(wiring, sdk_provider)
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
    setup.made_instance_id = made_instance_id
    for point, hook in (
        ("request", config.tracing_request_hook),
        ("response", config.tracing_response_hook),
        ("client_request", config.tracing_client_request_hook),
        ("client_response", config.tracing_client_response_hook),
        ("query", config.tracing_query_hook),
    ):
        if hook is not None:
            setup.add_hook(point, hook)
    undo: list[Callable[[], object]] = []
    try:
        apply_semconv(semconv_choice(config.tracing_semconv, environ))
        _refresh_after_fork()
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
            unwrap = instrument_flask(
                app, provider, response_header=config.tracing_response_header, setup=setup
            )
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


_fork_hook = threading.Event()


def _refresh_after_fork() -> None:
    """In a forked child (gunicorn ``--preload``), each running app's resource gets the
    child's PID and instance ID (registered once per process)."""
    if _fork_hook.is_set() or not hasattr(os, "register_at_fork"):
        return
    _fork_hook.set()

    def after_in_child() -> None:
        for setup in list(router().live):
            try:
                setup.after_fork()
            except Exception:  # never fail a fork over a resource attribute
                logger.debug("flask_observe: resource not refreshed after fork", exc_info=True)

    os.register_at_fork(after_in_child=after_in_child)
