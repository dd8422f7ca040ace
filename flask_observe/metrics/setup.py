"""The metrics feature: the app's registry, the RED metrics of its requests, ``/metrics``."""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING

from .. import _optional
from .._routes import Claim, refuse_taken, routes, watch
from ..config import ConfigError
from ..feature import Feature, Plan, Wiring, switch
from ..hooks import Stage
from .settings import MetricsSettings

if TYPE_CHECKING:
    from . import Metrics

__all__ = ["FEATURE"]

logger = logging.getLogger("flask_observe")


def _wanted(plan: Plan) -> bool:
    return switch(
        plan.settings(MetricsSettings).metrics_enabled,
        "OBSERVE_METRICS_ENABLED",
        "prometheus_client",
        "metrics",
        what="metrics",
    )


def _claim(settings: MetricsSettings) -> Claim:
    return Claim(
        "OBSERVE_METRICS_PATH",
        "the Prometheus metrics",
        routes(settings.metrics_path),
        "/_observe/metrics",
    )


def _check(plan: Plan) -> None:
    refuse_taken(plan.app, _claim(plan.settings(MetricsSettings)))
    if plan.settings(MetricsSettings).metrics_outbound:
        _optional.require("requests", "requests", "OBSERVE_METRICS_OUTBOUND")
    settings = plan.settings(MetricsSettings)
    if settings.metrics_celery:
        _optional.require("celery", "celery", "OBSERVE_METRICS_CELERY")
    if settings.metrics_celery_broker_url is not None:
        _optional.require("redis", "redis", "OBSERVE_METRICS_CELERY_BROKER_URL")
        if not settings.metrics_celery_queues:
            raise ConfigError(
                "OBSERVE_METRICS_CELERY_BROKER_URL is set but OBSERVE_METRICS_CELERY_QUEUES is"
                " empty: name the queues whose length to read"
            )
    directory = plan.environ.get("PROMETHEUS_MULTIPROC_DIR") or plan.environ.get(
        "prometheus_multiproc_dir"
    )
    if directory and not os.path.isdir(directory):
        raise ConfigError(
            f"PROMETHEUS_MULTIPROC_DIR: {directory!r} is not a directory; make it before the"
            " workers start (flask_observe.contrib.gunicorn's on_starting does) or unset it"
        )
    if directory and not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR: {directory!r} is not writable")


def _excluded(plan: Plan) -> tuple[str, ...]:
    return (rf"^{re.escape(plan.settings(MetricsSettings).metrics_path)}$",)


def _setup(wiring: Wiring) -> None:
    from . import Metrics
    from .view import register

    settings = wiring.settings(MetricsSettings)
    metrics = Metrics(
        buckets=settings.metrics_buckets,
        excluded=wiring.state.excluded,
        exemplars=settings.metrics_exemplars,
    )
    wiring.provide(metrics)
    wiring.request_hook(Stage.START, metrics.http.on_start)
    wiring.request_hook(Stage.MEASURE, metrics.http.on_finish)
    if settings.metrics_exemplars:
        wiring.want_trace_ids()
    if switch(
        settings.metrics_outbound,
        "OBSERVE_METRICS_OUTBOUND",
        "requests",
        "requests",
        what="outbound metrics",
    ):
        from ..hooks import trace_id_lookup
        from .outbound import OutboundMetrics

        outbound = OutboundMetrics(
            metrics,
            settings.metrics_outbound_hosts,
            trace_lookup=trace_id_lookup() if settings.metrics_exemplars else None,
        )
        wiring.provide(outbound)
        wiring.outbound_hook(outbound)
    _operations(wiring, settings, metrics)
    _process(wiring, metrics)
    _celery(wiring, settings, metrics)
    _count_early_log_deletions(wiring, metrics)
    auth = wiring.state.auth if settings.metrics_auth else None
    register(wiring.app, metrics, settings.metrics_path, auth)
    wiring.on_close(watch(wiring.app, _claim(settings)))
    wiring.publish_url("metrics", settings.metrics_path)
    _warn_without_multiprocess(wiring, settings.metrics_path)


def _warn_without_multiprocess(wiring: Wiring, path: str) -> None:
    """Say loudly, once per process, that several gunicorn workers serve ``path`` with
    counters of their own: each scrape sees one worker's share of the requests."""
    from .multiprocess import gunicorn_workers

    environ = wiring.environ
    if environ.get("PROMETHEUS_MULTIPROC_DIR") or environ.get("prometheus_multiproc_dir"):
        return
    found = gunicorn_workers()
    if found is None or found[1] < 2:
        return
    role, workers = found
    who = (
        f"gunicorn worker {os.getpid()}, one of {workers} workers,"
        if role == "worker"
        else f"gunicorn (master {os.getpid()}, preloading the app for {workers} workers)"
    )
    logger.warning(
        "flask_observe: %s serves %s without PROMETHEUS_MULTIPROC_DIR: each worker counts"
        " only its own requests, and a scrape reads the one worker that answers it and"
        " leaves out the other %d. Set"
        " PROMETHEUS_MULTIPROC_DIR to an empty directory before gunicorn starts and run it"
        " with the shipped hooks: PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) gunicorn -c"
        " python:flask_observe.contrib.gunicorn … (docs/metrics.md, 'gunicorn and other"
        " pre-fork servers')",
        who,
        path,
        workers - 1,
        extra={"workers": workers},
    )


def _process(wiring: Wiring, metrics: Metrics) -> None:
    """``app_info``; the CPU seconds of every worker (summed over a pre-fork server's)."""
    from .process import WorkerCpu, app_info

    app_info(metrics, wiring.service_name, wiring.config.service_version, wiring.config.environment)
    cpu = WorkerCpu(metrics)
    # The process answering a scrape brings its own figure up to date first; under a pre-fork
    # server the other workers add theirs on the ticker's rounds and when they exit.
    metrics.before_render.append(cpu.sample)
    if metrics.multiprocess_dir is not None:
        wiring.ticker.add("worker cpu", cpu.sample)
        wiring.at_exit(cpu.sample, 0.5)


def _operations(wiring: Wiring, settings: MetricsSettings, metrics: Metrics) -> None:
    """``flask_observe.timed``: the app's own operations (a span each when tracing is on)."""
    from ..hooks import trace_id_lookup
    from .operations import Operations, register

    tracer = None
    if "tracing" in wiring.state.features:
        from .._version import __version__
        from ..tracing.handle import TracingSetup

        tracing = wiring.get(TracingSetup)
        if tracing is not None:
            tracer = tracing.tracer(("flask_observe.timed", __version__, None))
    operations = Operations(
        metrics,
        tracer=tracer,
        trace_lookup=trace_id_lookup() if settings.metrics_exemplars else None,
        exemplars=settings.metrics_exemplars,
    )
    wiring.provide(operations)
    wiring.on_close(register(operations))


def _celery(wiring: Wiring, settings: MetricsSettings, metrics: Metrics) -> None:
    """Celery task metrics (recorded where tasks run), queue lengths, a worker's server."""
    if not switch(
        settings.metrics_celery, "OBSERVE_METRICS_CELERY", "celery", "celery", what="Celery metrics"
    ):
        return
    from ..hooks import trace_id_lookup
    from .celery import CeleryMetrics, QueueLengths, connect, disconnect, serve_from_worker

    recorder = CeleryMetrics(
        metrics,
        settings.metrics_celery_queues,
        trace_lookup=trace_id_lookup() if settings.metrics_exemplars else None,
        exemplars=settings.metrics_exemplars,
    )
    wiring.provide(recorder)
    connect(recorder)
    wiring.on_close(lambda: disconnect(recorder))
    if settings.metrics_celery_broker_url is not None:
        interval = float(wiring.config.sample_interval_seconds)
        lengths = QueueLengths(
            settings.metrics_celery_broker_url,
            settings.metrics_celery_queues,
            recorder.queue_length,
            timeout=max(0.05, min(2.0, interval * 0.8)),
        )
        recorder.lengths = lengths
        wiring.ticker.add("celery queue lengths", lengths.sample)
    if settings.metrics_celery_port:
        ticker = wiring.state.ticker
        wiring.on_close(
            serve_from_worker(
                metrics,
                settings.metrics_celery_port,
                settings.metrics_celery_address,
                on_ready=ticker.ensure_started if ticker is not None else None,
            )
        )


def _count_early_log_deletions(wiring: Wiring, metrics: Metrics) -> None:
    """Count what log retention deleted younger than its minimum age to keep the disk
    budget (the logging feature, set up before this one, reports it)."""
    from ..logging.handlers import LoggingSetup

    log_setup = wiring.get(LoggingSetup)
    if log_setup is None:
        return
    files = metrics.counter(
        "flask_observe_log_files_deleted_early_total",
        "Rotated log files deleted younger than OBSERVE_LOG_RETENTION_MIN_SECONDS to keep"
        " OBSERVE_LOG_RETENTION_BYTES.",
    )
    size = metrics.counter(
        "flask_observe_log_bytes_deleted_early_total",
        "Bytes of rotated log files deleted younger than OBSERVE_LOG_RETENTION_MIN_SECONDS.",
    )

    def count(file_count: int, byte_count: int) -> None:
        files.inc(file_count)
        size.inc(byte_count)

    wiring.on_close(log_setup.on_early_deletion(count))


FEATURE = Feature(
    "metrics",
    MetricsSettings,
    _setup,
    wanted=_wanted,
    check=_check,
    excluded_paths=_excluded,
)
