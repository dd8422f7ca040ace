"""Keys of the diagnostics (docs/metrics.md#diagnostics): SQL, memory, disk.

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import boolean, integer, key, number, opt_boolean, text


@dataclass(frozen=True)
class DiagnosticsSettings:
    """Keys of the diagnostics (docs/metrics.md#diagnostics)."""

    #: SQLAlchemy query timing and per-request query counts; ``None``: on when SQLAlchemy is
    #: installed (and metrics are on).
    diagnostics_sql: bool | None = key(None, opt_boolean)
    slow_query_ms: float = key(500.0, number(0.0))
    #: Process RSS gauge and growth rate (needs psutil); ``None``: on when psutil is installed.
    diagnostics_memory: bool | None = key(None, opt_boolean)
    #: Window over which memory growth is measured.
    memory_window_seconds: float = key(3600.0, number(1.0))
    #: Growth (MB/hour over the window) that counts as a leak; 0: never.
    memory_growth_mb_per_hour: float = key(100.0, number(0.0))
    #: When growth crosses the threshold, log the top allocation differences (tracemalloc;
    #: costs CPU and memory while on, so off by default).
    memory_tracemalloc: bool = key(False, boolean)
    memory_tracemalloc_top: int = key(10, integer(1, 1000))
    #: File system whose free share is sampled (``flask_observe_disk_free_ratio``) and alerted
    #: on (``OBSERVE_ALERT_DISK_FREE``).
    alert_disk_path: str = key("/", text)
