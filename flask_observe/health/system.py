"""Built-in checks of the machine: disk space and memory (psutil)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .. import _optional
from .checks import HealthCheck, Observation, Status

__all__ = ["DiskCheck", "MemoryCheck"]

MIB = 1024 * 1024


def _level(value: float, warn: float | None, fail: float | None) -> Status:
    if fail is not None and value >= fail:
        return Status.FAIL
    if warn is not None and value >= warn:
        return Status.WARN
    return Status.PASS


def _psutil() -> Any:
    return _optional.require("psutil", "health", "disk and memory health checks")


@dataclass
class DiskCheck(HealthCheck):
    """Share of the file system holding ``path`` that is used (``<name>:utilization``).

    Not critical by default: a full disk is worth a warning long before it stops the app.

    :param warn_percent: warn at or above this utilisation.
    :param fail_percent: fail at or above it.
    """

    critical: bool = False
    path: str = "/"
    warn_percent: float = 90.0
    fail_percent: float = 95.0

    component_type = "system"

    def run(self) -> Observation:
        usage = _psutil().disk_usage(self.path)
        status = _level(usage.percent, self.warn_percent, self.fail_percent)
        output = None
        if status is not Status.PASS:
            output = f"{usage.percent:.1f}% used, {usage.free / MIB / 1024:.1f} GiB free"
        return Observation(
            "utilization",
            round(usage.percent, 1),
            "percent",
            status,
            output=output,
            extra={"freeBytes": usage.free, "totalBytes": usage.total},
        )


@dataclass
class MemoryCheck(HealthCheck):
    """The system's memory utilisation and this process's resident size.

    Two entries: ``<name>:utilization`` (system, percent; in a container psutil sees the
    host's memory, not the cgroup limit) and ``<name>:rss`` (this process, MiB).
    Not critical by default.

    :param warn_percent: warn at or above this system utilisation.
    :param fail_percent: fail at or above it.
    :param rss_warn_mib: warn when the process's RSS reaches this many MiB (``None``: never).
    :param rss_fail_mib: fail when it reaches this many MiB (``None``: never).
    """

    critical: bool = False
    warn_percent: float = 90.0
    fail_percent: float = 95.0
    rss_warn_mib: float | None = None
    rss_fail_mib: float | None = None
    _process: Any = field(default=None, init=False, repr=False, compare=False)

    component_type = "system"

    def run(self) -> list[Observation]:
        psutil = _psutil()
        if self._process is None or self._process.pid != os.getpid():  # first run, or forked
            self._process = psutil.Process()
        system = psutil.virtual_memory()
        rss_mib = self._process.memory_info().rss / MIB
        sys_status = _level(system.percent, self.warn_percent, self.fail_percent)
        rss_status = _level(rss_mib, self.rss_warn_mib, self.rss_fail_mib)
        return [
            Observation(
                "utilization",
                round(system.percent, 1),
                "percent",
                sys_status,
                output=None
                if sys_status is Status.PASS
                else f"system memory {system.percent:.1f}% used",
                extra={"availableBytes": system.available, "totalBytes": system.total},
            ),
            Observation(
                "rss",
                round(rss_mib, 1),
                "MiB",
                rss_status,
                output=None
                if rss_status is Status.PASS
                else f"process resident size {rss_mib:.0f} MiB",
            ),
        ]
