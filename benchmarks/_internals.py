"""PRIVATE: every place a benchmark reaches past flask_observe's public API, and only here.

The benchmarks configure flask_observe through ``Observe`` and ``OBSERVE_*`` keys only. Four
readings have no public form yet; they live here, so that when the package's internals move
(issue 11 moves them) this is the one file to fix, and each fails loudly instead of measuring
something else:

- :func:`discard_spans`: make flask_observe's OTLP exporter one that receives every batch and
  keeps nothing, for the ``observe+tracing*`` configurations of ``overhead.py`` (their peer,
  ``peer:otel-flask``, discards the same way). The configurations of issue 17 do not use it:
  they export to a dead collector through public settings only.
- :func:`tracing_stats`: spans exported and dropped (``tracing_faults.py``).
- :func:`latest_check_durations`: how long each health check's last run took
  (``health.py``: a probe's latency minus its slowest check).
- :func:`log_viewer`: the app's log viewer object, built by ``Observe`` from public settings
  (``logsearch.py`` times its ``search``/``tail`` without the HTTP layer).

``Observe.state(app)`` is the wiring, not the API (issue 11 removes it from the public API); a
public way to reach a feature's handle will replace it here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask


def _state(app: Flask) -> Any:
    from flask_observe import Observe

    return Observe.state(app)


def discard_spans() -> None:
    """Replace the OTLP exporter flask_observe builds with one that discards every batch.

    Everything else is the library's own pipeline as deployed: its batch processor (bounded
    queue, drop counting) and its process-local exporter wrapper, which redacts each span on
    the export thread before handing the batch on. Call before ``Observe(app)``.

    :raises RuntimeError: the hook is gone (the internals moved): fix this function.
    """
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    try:
        from flask_observe.tracing import setup
    except ImportError as exc:
        raise RuntimeError(f"benchmarks/_internals.py: {exc}; update discard_spans()") from exc
    if not callable(getattr(setup, "exporter_factory", None)):
        raise RuntimeError(
            "benchmarks/_internals.py: flask_observe.tracing.setup.exporter_factory is gone;"
            " update discard_spans() to where the tracing setup builds its exporter"
        )

    class DiscardingExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    def factory(name: str, endpoint: str | None) -> Callable[[], SpanExporter]:
        return DiscardingExporter

    setup.exporter_factory = factory


def tracing_stats(app: Flask) -> dict[str, int | None]:
    """Spans ``queued``, ``queue_capacity``, ``dropped``, ``exported``, ``export_failed``."""
    tracing = _state(app).tracing
    if tracing is None:
        raise RuntimeError("tracing is off on this app")
    return dict(tracing.stats())


def latest_check_durations(app: Flask) -> dict[str, float]:
    """Seconds the last run of each health check took (as each check timed itself)."""
    runner = _state(app).health
    if runner is None:
        raise RuntimeError("health is off on this app")
    return {name: result.duration for name, result in runner.latest().items()}


def log_viewer(app: Flask) -> Any:
    """The ``LogViewer`` ``Observe`` built for ``app`` (``OBSERVE_LOGVIEWER_ENABLED``).

    Used: ``parse(args)`` (a query from URL-style arguments), ``search(query)`` and
    ``tail(name, args, lines)``, whose pages have ``results``, ``cursor``, ``scanned_bytes``.
    """
    viewer = _state(app).logviewer
    if viewer is None:
        raise RuntimeError("the log viewer is off on this app")
    return viewer
