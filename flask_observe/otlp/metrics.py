"""The request, outbound, SQL and process metrics through the OpenTelemetry SDK's metrics
pipeline (``MeterProvider`` + ``PeriodicExportingMetricReader`` + the OTLP exporter), named
per the current semantic conventions:

- ``http.server.request.duration`` (s, histogram, the conventions' advisory buckets):
  ``http.request.method``, ``http.route``, ``http.response.status_code``, ``url.scheme``,
  ``network.protocol.version``, ``error.type`` (5xx: the status code);
- ``http.server.active_requests`` (``{request}``, up-down counter): method and scheme;
- ``http.client.request.duration`` (s, histogram) of outgoing ``requests`` calls:
  ``http.request.method``, ``server.address`` (a host of ``OBSERVE_METRICS_OUTBOUND_HOSTS``,
  ``_OTHER`` for any other: bounded), ``server.port``, ``http.response.status_code``,
  ``error.type``;
- ``db.client.operation.duration`` (s, histogram) of SQLAlchemy statements:
  ``db.system.name``, ``db.operation.name``, ``db.namespace``, ``server.address``/``port``;
- ``process.uptime``, ``process.cpu.time``, ``process.memory.usage``, and
  ``flask_observe.circuit_breaker.state`` (0 closed, 1 half-open, 2 open) when there are
  breakers.

The histograms are fed from the request hooks (``Wiring.request_hook``, ``outbound_hook``)
into cells of our own (:mod:`.histograms`): the SDK's ``Histogram.record`` costs 16 µs a call
here against 1.5 µs for prometheus_client's counter and histogram of a request (measured), so
a request only appends its value to its cell's queue; the cells become the SDK's data points
when the reader collects (:class:`MergingExporter`, on the reader's thread). The attributes
and the process's observations are in :mod:`.observations`. Everything else — temporality,
the data model, the periodic reader, OTLP encoding, retries, timeouts — is the SDK's. Memory
is bounded by the attributes being bounded (routes, methods, status codes, declared hosts, SQL
verbs) and by the values a cell queues between folds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from .._internal import exit_flushes, run_with_deadline
from ..hooks import SPAN_CONTEXT_KEY, OutboundCall, RequestRecord
from ..hosts import HostAllowlist
from .exporters import ProcessLocal
from .histograms import FOLD_AT, ActiveRequests, Histogram_
from .observations import (
    METHODS,
    OTHER,
    breaker_observations,
    client_attributes,
    cpu_time,
    current_span_context,
    db_attributes,
    memory_observations,
    memory_usage,
    server_attributes,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation

__all__ = ["MergingExporter", "MetricsPipeline", "temporality_preference"]

logger = logging.getLogger("flask_observe.otlp")

#: The conventions' advisory boundaries of the HTTP durations (seconds).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: ... and of db.client.operation.duration.
DB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
SCOPE = InstrumentationScope("flask_observe", None)
_PORTS = {"http": 80, "https": 443}
#: Environ key of a request's active-requests counts (set by on_start, read by on_finish).
_ACTIVE_KEY = "flask_observe.otlp.active"


def temporality_preference(environ: Mapping[str, str]) -> dict[type, AggregationTemporality]:
    """``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` as the SDK reads it:
    ``cumulative`` (default), ``delta`` (counters and histograms as deltas) or ``lowmemory``
    (synchronous counters and histograms as deltas); up-down counters stay cumulative."""
    choice = environ.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "").strip().lower()
    cumulative, delta = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA
    kinds = (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter)
    preference: dict[type, AggregationTemporality] = dict.fromkeys(
        (*kinds, ObservableGauge), cumulative
    )
    if choice in ("delta", "lowmemory"):
        preference[Counter] = preference[Histogram] = delta
        if choice == "delta":
            preference[ObservableCounter] = delta
    return preference


class MetricsPipeline:
    """The OTLP metrics of one app: its cells, request and outbound hooks, SQL listener,
    the SDK's provider and periodic reader.

    :param excluded: the shared exclusion list (probes and ``/metrics`` are not requests).
    :param hosts: the declared outbound hosts (the only ``server.address`` values but
        ``_OTHER``).
    """

    def __init__(
        self,
        resource: Resource,
        factory: Callable[[], MetricExporter],
        environ: Mapping[str, str],
        *,
        interval: float,
        excluded: Callable[[str], bool] | None = None,
        hosts: Iterable[str] = (),
        breakers: Callable[[], Mapping[str, Any]] | None = None,
        shutdown_timeout: float = 2.0,
    ) -> None:
        self.excluded = excluded
        self.hosts = HostAllowlist(hosts)
        self.shutdown_timeout = shutdown_timeout
        self.server = Histogram_(
            "http.server.request.duration", "s", "Duration of HTTP server requests.", HTTP_BUCKETS
        )
        self.client = Histogram_(
            "http.client.request.duration", "s", "Duration of HTTP client requests.", HTTP_BUCKETS
        )
        self.db = Histogram_(
            "db.client.operation.duration",
            "s",
            "Duration of database client operations.",
            DB_BUCKETS,
        )
        self.histograms = (self.server, self.client, self.db)
        self.active = ActiveRequests()
        self._started = time.time()
        self._statements: dict[str, str] = {}
        self._instance = ProcessIdentity(resource, environ)
        preference = temporality_preference(environ)
        self.exporter = MergingExporter(factory, self, preference)
        self.delta = preference[Histogram] is AggregationTemporality.DELTA
        self.reader = PeriodicExportingMetricReader(
            self.exporter, export_interval_millis=interval * 1000
        )
        self.provider = MeterProvider(
            resource=resource, metric_readers=[self.reader], shutdown_on_exit=False
        )
        meter = self.provider.get_meter("flask_observe")
        meter.create_observable_up_down_counter(
            "http.server.active_requests",
            [self.active.observe],
            unit="{request}",
            description="Number of active HTTP server requests.",
        )
        meter.create_observable_gauge(
            "process.uptime", [self._uptime], unit="s", description="The time the process has run."
        )
        meter.create_observable_counter(
            "process.cpu.time", [cpu_time], unit="s", description="CPU seconds of the process."
        )
        if memory_usage() is not None:
            meter.create_observable_up_down_counter(
                "process.memory.usage",
                [lambda options: memory_observations()],
                unit="By",
                description="The resident memory of the process.",
            )
        if breakers is not None:
            meter.create_observable_gauge(
                "flask_observe.circuit_breaker.state",
                [lambda options: breaker_observations(breakers)],
                unit="1",
                description="Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            )
        self._closed = False
        _PIPELINES.add(self)

    # -- request hooks (the request's thread) ----------------------------------------------

    def _is_excluded(self, record: RequestRecord) -> bool:
        excluded = record.excluded
        if excluded is None:
            predicate = self.excluded
            excluded = predicate is not None and predicate(record.environ.get("PATH_INFO", ""))
            record.excluded = excluded
        return excluded

    def on_start(self, record: RequestRecord) -> None:
        excluded = record.excluded
        environ = record.environ
        if excluded is None:  # the first hook of the request to ask (_is_excluded, inline)
            predicate = self.excluded
            excluded = predicate is not None and predicate(environ.get("PATH_INFO", ""))
            record.excluded = excluded
        if excluded:
            return
        method = environ.get("REQUEST_METHOD", "")
        key = (method if method in METHODS else OTHER, environ.get("wsgi.url_scheme", "http"))
        active = self.active
        found = active.counts.get(key)
        if found is None:
            found = active.of(key)
        found[2][0] = next(found[0])
        # For on_finish: the same counts and attribute values, not looked up again.
        environ[_ACTIVE_KEY] = (found, key)

    def on_finish(self, record: RequestRecord) -> None:
        excluded = record.excluded  # on_start checked it
        if excluded if excluded is not None else self._is_excluded(record):
            return
        environ = record.environ
        started = environ.get(_ACTIVE_KEY)
        if started is not None:  # (counts of before a fork are the parent's: left alone)
            found, (method, scheme) = started
        else:  # not started through this pipeline
            method = environ.get("REQUEST_METHOD", "")
            if method not in METHODS:
                method = OTHER
            scheme = environ.get("wsgi.url_scheme", "http")
            found = self.active.of((method, scheme))
        found[2][1] = next(found[1])
        key = (method, record.route, record.status, scheme, environ.get("SERVER_PROTOCOL", ""))
        server = self.server
        cell = server.cells.get(key)
        if cell is None:
            cell = server.cell(key, lambda: server_attributes(*key))
        # Histogram_.record, inline (one call less a request).
        value = record.duration - record.client_wait
        pending = cell.pending
        pending.append(value)
        span = environ.get(SPAN_CONTEXT_KEY)
        if span is not None and span.trace_flags & 1:
            cell.exemplar = (value, time.time_ns(), span.trace_id, span.span_id)
        if len(pending) >= FOLD_AT:
            cell.fold_unless_folding(server.bounds)

    def on_outbound(self, call: OutboundCall) -> None:
        method = call.method if call.method in METHODS else OTHER
        parts = urlsplit(call.url)
        host = self.hosts.label(call.url)
        address, port = OTHER, None
        if host is not None:
            address = parts.hostname or OTHER
            try:
                port = parts.port or _PORTS.get(parts.scheme)
            except ValueError:
                port = None
        error = call.error
        status = call.status if error is None else None
        error_type = type(error).__qualname__ if error is not None else None
        if error_type is None and status is not None and status >= 400:
            error_type = str(status)
        key = (method, address, port, status, error_type)
        cell = self.client.cell(key, lambda: client_attributes(*key))
        self.client.record(cell, call.duration, current_span_context())

    def on_query(self, statement: str, elapsed: float, engine: Any) -> None:
        verb = self._statements.get(statement)
        if verb is None:
            from ..diagnostics.queries import operation

            verb = operation(statement)
            if len(self._statements) >= 2048:
                self._statements.clear()
            self._statements[statement] = verb
        url = engine.url
        key = (url.drivername, url.database, url.host, url.port, verb)
        cell = self.db.cells.get(key)
        if cell is None:
            cell = self.db.cell(key, lambda: db_attributes(engine, verb))
        self.db.record(cell, elapsed, current_span_context())

    # -- the reader's thread ---------------------------------------------------------------

    def merge(self, data: MetricsData) -> MetricsData:
        """The SDK's collection with our histograms added, on this process's resource."""
        now = time.time_ns()
        ours = [m for m in (h.collect(now, self.delta) for h in self.histograms) if m]
        resource = self._instance.resource()
        out = []
        for index, each in enumerate(data.resource_metrics):
            scopes = list(each.scope_metrics)
            if index == 0 and ours:
                # One scope per name: the exporter keys scopes by it (ours would replace the
                # SDK instruments' "flask_observe" scope).
                for position, scope in enumerate(scopes):
                    if scope.scope.name == SCOPE.name:
                        merged = [*scope.metrics, *ours]
                        scopes[position] = ScopeMetrics(scope.scope, merged, scope.schema_url)
                        break
                else:
                    scopes.append(ScopeMetrics(SCOPE, ours, ""))
            out.append(ResourceMetrics(resource, scopes, each.schema_url))
        if not out and ours:
            out.append(ResourceMetrics(resource, [ScopeMetrics(SCOPE, ours, "")], ""))
        return MetricsData(out)

    def _uptime(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        yield Observation(time.time() - self._started)

    def _forked(self) -> None:
        # The parent's counts are the parent's: each process reports its own.
        for histogram in self.histograms:
            histogram.reset()
        self.active = ActiveRequests()
        self._started = time.time()

    # -- the end -------------------------------------------------------------------------

    def shutdown(self) -> bool:
        """Export one last time and stop, waiting at most ``shutdown_timeout`` seconds (at
        exit: what is left of the shared deadline); the exporter is then shut down, which
        cancels an export a hung collector never answered. Safe to call twice."""
        if self._closed:
            return True
        self._closed = True
        wait = exit_flushes.remaining(self.shutdown_timeout)
        local = self.exporter.local
        failed_before = local.unsent()[0]
        finished = run_with_deadline(
            lambda: self.provider.shutdown(timeout_millis=max(0.0, wait - 0.1) * 1000),
            wait,
            "otlp-metrics-shutdown",
        )
        if not finished:
            exporter = local.built_here()
            if exporter is not None:
                run_with_deadline(lambda: exporter.shutdown(timeout_millis=0), 0.2, "otlp-cut")
        failed = local.unsent()[0] - failed_before
        if failed or not finished:
            logger.warning(
                "flask_observe: the last metrics were not exported at shutdown (collector slow"
                " or unreachable; waited %.1f s)",
                wait,
            )
        return finished and not failed


#: Every pipeline of this process, reset in a forked child (weakly held: an app shut down and
#: dropped is not kept alive by the fork hook).
_PIPELINES: weakref.WeakSet[MetricsPipeline] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pipeline in list(_PIPELINES):
        pipeline._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class MergingExporter(MetricExporter):
    """The SDK's metric exporter (built in the process that exports), given the SDK's
    collection with the pipeline's histograms added."""

    def __init__(
        self,
        factory: Callable[[], MetricExporter],
        pipeline: MetricsPipeline,
        preference: dict[type, AggregationTemporality],
    ) -> None:
        super().__init__(preferred_temporality=preference, preferred_aggregation=None)
        self.local: ProcessLocal[MetricExporter] = ProcessLocal(factory, "metrics")
        self.pipeline = pipeline

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        data = self.pipeline.merge(metrics_data)
        self.local.begin(1)
        try:
            result = self.local.current().export(data, timeout_millis=timeout_millis)
        except Exception:
            self.local.failures("exporting metrics")
            result = MetricExportResult.FAILURE
        self.local.end(1, result is MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        exporter = self.local.built_here()
        return True if exporter is None else exporter.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        exporter = self.local.built_here()
        if exporter is not None:
            exporter.shutdown(timeout_millis=timeout_millis)


class ProcessIdentity:
    """The resource of this process: the app's, with its own ``process.pid`` and
    ``service.instance.id`` (made again after a fork), unless ``OTEL_RESOURCE_ATTRIBUTES``
    sets the instance id."""

    def __init__(self, resource: Resource, environ: Mapping[str, str]) -> None:
        self.base = resource
        self._fixed = "service.instance.id=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
        self._pid = 0
        self._resource = resource

    def resource(self) -> Resource:
        pid = os.getpid()
        if pid != self._pid:
            extra: dict[str, Any] = {"process.pid": pid}
            if not self._fixed:
                # The spans' ID in this process (tracing's), a new one after a fork.
                from ..tracing.conventions import instance_id

                extra["service.instance.id"] = instance_id()
            self._resource = self.base.merge(Resource(extra))
            self._pid = pid
        return self._resource


class QueryListener:
    """SQLAlchemy's cursor events, timed, for :meth:`MetricsPipeline.on_query`
    (process-wide, like the SQL diagnostics' listener; reference-counted)."""

    _users: list[MetricsPipeline] = []
    _lock = threading.Lock()
    _START = "_flask_observe_otlp_start"

    @classmethod
    def add(cls, pipeline: MetricsPipeline) -> Callable[[], None]:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        with cls._lock:
            if not cls._users:
                event.listen(Engine, "before_cursor_execute", cls._before)
                event.listen(Engine, "after_cursor_execute", cls._after)
            cls._users = [*cls._users, pipeline]

        def remove() -> None:
            with cls._lock:
                cls._users = [p for p in cls._users if p is not pipeline]
                if not cls._users:
                    event.remove(Engine, "before_cursor_execute", cls._before)
                    event.remove(Engine, "after_cursor_execute", cls._after)

        return remove

    @staticmethod
    def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        context = args[1] if len(args) > 1 else None
        if context is not None:
            setattr(context, QueryListener._START, time.perf_counter())

    @staticmethod
    def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        context = args[1] if len(args) > 1 else None
        started = getattr(context, QueryListener._START, None) if context is not None else None
        if started is None:
            return
        elapsed = time.perf_counter() - started
        from ..state import state_or_none

        state = state_or_none()
        users = QueryListener._users
        pipeline = state.get(OtlpMetrics) if state is not None else None
        targets = [pipeline.pipeline] if pipeline is not None else users[:1]
        for target in targets:
            try:
                target.on_query(statement, elapsed, conn.engine)
            except Exception:
                logger.debug("flask_observe: timing a query for OTLP failed", exc_info=True)


class OtlpMetrics:
    """The OTLP metrics of one app (``Observe.find(OtlpMetrics, app)``)."""

    def __init__(self, pipeline: MetricsPipeline, exporter_name: str) -> None:
        self.pipeline = pipeline
        self.exporter_name = exporter_name

    def stats(self) -> dict[str, int]:
        """Exports done and failed since start."""
        local = self.pipeline.exporter.local
        return {"exported": local.exported, "export_failed": local.failed}
