"""What the app is and what its processes cost: ``app_info`` and, under a pre-fork server, the
workers' CPU time.

- ``app_info{service, version, environment, flask_observe_version, flask_version,
  python_version}`` (gauge, always 1): join it to any series to see what was deployed
  (``OBSERVE_SERVICE_VERSION``, ``OBSERVE_ENVIRONMENT``; ``unknown`` when not set);
- ``flask_observe_workers_cpu_seconds_total`` (counter): user + system CPU seconds of every
  worker process. Each worker adds what it used since its last sample (the background
  sampler's round, each scrape it answers, and its exit); under a pre-fork server each writes
  its own prometheus_client file and a dead worker's count is merged into the archive
  (:func:`~.multiprocess.mark_process_dead`), so the total survives recycling and ``rate()``
  of it is the service's CPU use, where prometheus_client's ``process_cpu_seconds_total`` is
  not there (its collector reads one process). In a single process the two agree.
"""

from __future__ import annotations

import os
import platform
import threading
from typing import TYPE_CHECKING, Any

from .._version import __version__
from .multiprocess import QUANTUM, SCALE

if TYPE_CHECKING:
    from . import Metrics

__all__ = ["WorkerCpu", "app_info"]


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def app_info(metrics: Metrics, service: str, version: str | None, environment: str | None) -> Any:
    """Set ``app_info`` to 1 with this app's identity; returns the gauge."""
    gauge = metrics.gauge(
        "app_info",
        "What is deployed: the service, its version and environment, and the versions under it.",
        [
            "service",
            "version",
            "environment",
            "flask_observe_version",
            "flask_version",
            "python_version",
        ],
        multiprocess_mode="max",
    )
    gauge.labels(
        service[:100],
        (version or "unknown")[:100],
        (environment or "unknown")[:100],
        __version__,
        _version("flask"),
        platform.python_version(),
    ).set(1)
    return gauge


class WorkerCpu:
    """Adds this process's CPU seconds since its last sample to the shared counter."""

    def __init__(self, metrics: Metrics) -> None:
        self.counter = metrics.counter(
            "flask_observe_workers_cpu_seconds_total",
            "User and system CPU seconds used by every worker process (pre-fork servers).",
        )
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._last = _cpu()

    def sample(self) -> None:
        with self._lock:
            now, pid = _cpu(), os.getpid()
            if pid != self._pid:
                # A forked worker: its own times start at 0 (the parent's are the parent's).
                self._pid, self._last = pid, 0
            used, self._last = now - self._last, now
        if used > 0:
            self.counter.inc(used * QUANTUM)  # exact: the workers' sum never steps down


def _cpu() -> int:
    """User and system CPU time of this process, in whole :data:`~.multiprocess.QUANTUM`."""
    times = os.times()
    return round((times.user + times.system) * SCALE)
