"""What the benchmarks read of an app besides its requests, in one place.

The benchmarks configure flask_observe through ``Observe`` and ``OBSERVE_*`` keys only. One
reach is past the public API and PRIVATE — :func:`discard_spans`, which fails loudly when the
internals it patches move; the other three read a feature's handle through the public
``Observe.handle``:

- :func:`discard_spans`: make flask_observe's OTLP exporter one that receives every batch and
  keeps nothing, for the ``observe+tracing*`` configurations of ``overhead.py`` (their peer,
  ``peer:otel-flask``, discards the same way). The configurations of issue 17 do not use it:
  they export to a dead collector through public settings only.
- :func:`tracing_stats`: spans exported and dropped (``tracing_faults.py``).
- :func:`latest_check_durations`: how long each health check's last run took
  (``health.py``: a probe's latency minus its slowest check).
- :func:`log_viewer`: the app's log viewer object, built by ``Observe`` from public settings
  (``logsearch.py`` times its ``search``/``tail`` without the HTTP layer).

"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask


def discard_spans() -> None:
    """Replace the OTLP exporter flask_observe builds with one that discards every batch.

    Everything else is the library's own pipeline as deployed: its batch processor (bounded
    queue, drop counting) and its process-local exporter wrapper, which redacts each span on
    the export thread before handing the batch on. Call before ``Observe(app)``.

    :raises RuntimeError: the hook is gone (the internals moved): fix this function.
    """
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    try:
        from flask_observe.tracing import provider
    except ImportError as exc:
        raise RuntimeError(f"benchmarks/_internals.py: {exc}; update discard_spans()") from exc
    if not callable(getattr(provider, "exporter_factory", None)):
        raise RuntimeError(
            "benchmarks/_internals.py: flask_observe.tracing.provider.exporter_factory is gone;"
            " update discard_spans() to where the tracing setup builds its exporter"
        )

    class DiscardingExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    def factory(name: str, endpoint: str | None) -> Callable[[], SpanExporter]:
        return DiscardingExporter

    provider.exporter_factory = factory  # type: ignore[assignment]


def tracing_stats(app: Flask) -> dict[str, int | None]:
    """Spans ``queued``, ``queue_capacity``, ``dropped``, ``exported``, ``export_failed``."""
    from flask_observe import Observe
    from flask_observe.tracing import TracingSetup

    return dict(Observe.handle(TracingSetup, app).stats())


def latest_check_durations(app: Flask) -> dict[str, float]:
    """Seconds the last run of each health check took (as each check timed itself)."""
    from flask_observe import Observe
    from flask_observe.health import HealthRunner

    runner = Observe.handle(HealthRunner, app)
    return {name: result.duration for name, result in runner.latest().items()}


def log_viewer(app: Flask) -> Any:
    """The ``LogViewer`` ``Observe`` built for ``app`` (``OBSERVE_LOGVIEWER_ENABLED``).

    Used: ``parse(args)`` (a query from URL-style arguments), ``search(query)`` and
    ``tail(name, args, lines)``, whose pages have ``results``, ``cursor``, ``scanned_bytes``.
    """
    from flask_observe import Observe
    from flask_observe.logviewer import LogViewer

    return Observe.handle(LogViewer, app)
