"""Memory: the process's RSS as a gauge, its growth rate over a window, and — optionally —
what grew, from a tracemalloc diff.

``sample()`` runs on the background sampler. The growth rate (MB/hour) is the slope between
the oldest and newest sample of the window, reported once the window is at least half full.
When it crosses the threshold, one warning is logged per window; with
``OBSERVE_MEMORY_TRACEMALLOC`` on (off by default: tracing allocations costs CPU and memory),
the warning carries the top-N allocation sites that grew since the previous report.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tracemalloc
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..metrics import Metrics

__all__ = ["MemoryWatch"]

logger = logging.getLogger("flask_observe.diagnostics")


class MemoryWatch:
    """Samples this process's memory.

    :param metrics: where the gauges go (``None``: no gauges, growth only).
    :param window: seconds of history the growth rate is measured over.
    :param threshold: MB/hour that counts as a leak (0: never).
    :param use_tracemalloc: start tracemalloc and log top-N diffs when crossing.
    :param top: how many allocation sites a diff lists.
    """

    def __init__(
        self,
        metrics: Metrics | None,
        window: float,
        threshold: float,
        use_tracemalloc: bool = False,
        top: int = 10,
    ) -> None:
        self._process: Any = None
        self._pid = 0
        self.window = window
        self.threshold = threshold
        self.top = top
        self._samples: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()
        self._last_report = float("-inf")
        self.rss_gauge: Any = None
        self.growth_gauge: Any = None
        if metrics is not None:
            self.rss_gauge = metrics.gauge(
                "flask_observe_memory_rss_bytes",
                "Resident memory of the serving processes.",
                multiprocess_mode="livesum",
            )
            self.growth_gauge = metrics.gauge(
                "flask_observe_memory_growth_bytes_per_second",
                "Growth of resident memory over the measuring window (largest of the workers).",
                multiprocess_mode="livemax",
            )
        self._tracemalloc = use_tracemalloc
        self._started_tracemalloc = False
        self._baseline: tracemalloc.Snapshot | None = None
        if use_tracemalloc:
            if not tracemalloc.is_tracing():
                tracemalloc.start()
                self._started_tracemalloc = True
            self._baseline = tracemalloc.take_snapshot()

    def _current_process(self) -> Any:
        import psutil

        pid = os.getpid()
        if self._pid != pid:  # first use, or forked (gunicorn --preload): measure ourselves
            self._process, self._pid = psutil.Process(pid), pid
            with self._lock:
                self._samples.clear()
        return self._process

    def rss(self) -> float | None:
        """The latest sampled RSS in bytes."""
        with self._lock:
            return self._samples[-1][1] if self._samples else None

    def growth_mb_per_hour(self) -> float | None:
        """Growth over the window in MB/hour; ``None`` until the window is half full."""
        with self._lock:
            if len(self._samples) < 2:
                return None
            (t0, r0), (t1, r1) = self._samples[0], self._samples[-1]
        if t1 - t0 < self.window / 2:
            return None
        return (r1 - r0) / (t1 - t0) * 3600.0 / 1e6

    def sample(self, now: float | None = None, rss: float | None = None) -> None:
        """Read RSS, update the gauges, check growth."""
        now = time.monotonic() if now is None else now
        if rss is None:
            rss = float(self._current_process().memory_info().rss)
        with self._lock:
            self._samples.append((now, rss))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
                self._samples.popleft()
        growth = self.growth_mb_per_hour()
        if self.rss_gauge is not None:
            self.rss_gauge.set(rss)
            self.growth_gauge.set((growth or 0.0) * 1e6 / 3600.0)
        if growth is None or not self.threshold or growth <= self.threshold:
            return
        if now - self._last_report < self.window:
            return
        self._last_report = now
        extra: dict[str, Any] = {
            "growth_mb_per_hour": round(growth, 2),
            "threshold_mb_per_hour": self.threshold,
            "rss_mb": round(rss / 1e6, 1),
            "window_seconds": self.window,
        }
        if self._tracemalloc and self._baseline is not None and tracemalloc.is_tracing():
            snapshot = tracemalloc.take_snapshot()
            stats = snapshot.compare_to(self._baseline, "lineno")[: self.top]
            extra["top_growth"] = [
                {"where": str(stat.traceback[0]), "size_diff_kb": round(stat.size_diff / 1024, 1)}
                for stat in stats
            ]
            self._baseline = snapshot
        logger.warning("memory is growing", extra=extra)

    def close(self) -> None:
        if self._started_tracemalloc:
            tracemalloc.stop()
            self._started_tracemalloc = False
