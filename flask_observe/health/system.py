"""Built-in checks of the machine: disk space and memory (psutil, and the cgroup's memory limit
in a container)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import _optional
from .checks import HealthCheck, Observation, Status

__all__ = ["CgroupMemory", "DiskCheck", "MemoryCheck", "cgroup_memory"]

MIB = 1024 * 1024
#: cgroup v1 writes "no limit" as a number near 2**63 (rounded down to a page).
_NO_LIMIT = 2**62


@dataclass(frozen=True)
class CgroupMemory:
    """The memory limit of the process's cgroup and what counts against it.

    ``working_set`` is usage minus inactive file cache: what the kernel cannot simply drop, and
    what the kubelet compares with the limit when it decides to evict or OOM-kill.
    """

    limit: int
    working_set: int
    version: int


def cgroup_memory(
    proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup"
) -> CgroupMemory | None:
    """The memory limit of this process's cgroup (v1 or v2), or ``None`` when there is none
    (no limit set, not on Linux, cgroup files not readable)."""
    try:
        with open(proc_cgroup, encoding="ascii") as fh:
            entries = [line.rstrip("\n").split(":", 2) for line in fh if line.count(":") >= 2]
    except OSError:
        return None
    for _, controllers, path in entries:
        if "memory" in controllers.split(","):
            return _cgroup_v1(os.path.join(root, "memory"), path)
    for hierarchy, controllers, path in entries:
        if hierarchy == "0" and controllers == "":
            unified = root if os.path.exists(os.path.join(root, "cgroup.controllers")) else None
            if unified is None:
                unified = os.path.join(root, "unified")
            return _cgroup_v2(unified, path)
    return None


def _cgroup_dir(mount: str, path: str) -> str:
    """The directory of ``path`` under ``mount``; in a container with its own cgroup
    namespace the path may not be visible, and the mount's root is the container's group."""
    candidate = os.path.join(mount, path.lstrip("/"))
    return candidate if os.path.isdir(candidate) else mount


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat(path: str, key: str) -> int:
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_v1(mount: str, path: str) -> CgroupMemory | None:
    directory = _cgroup_dir(mount, path)
    stat = os.path.join(directory, "memory.stat")
    # The effective limit, ancestors included; older kernels only have the group's own.
    limit = _stat(stat, "hierarchical_memory_limit") or _read_int(
        os.path.join(directory, "memory.limit_in_bytes")
    )
    usage = _read_int(os.path.join(directory, "memory.usage_in_bytes"))
    if not limit or limit >= _NO_LIMIT or usage is None:
        return None
    working_set = max(0, usage - _stat(stat, "total_inactive_file"))
    return CgroupMemory(limit, working_set, 1)


def _cgroup_v2(mount: str, path: str) -> CgroupMemory | None:
    directory = _cgroup_dir(mount, path)
    usage = _read_int(os.path.join(directory, "memory.current"))
    if usage is None:
        return None
    # The effective limit is the lowest memory.max from the group up to the mount's root.
    limits = []
    current = directory
    while True:
        limit = _read_int(os.path.join(current, "memory.max"))  # "max" reads as None
        if limit is not None:
            limits.append(limit)
        if os.path.samefile(current, mount) or len(current) <= len(mount):
            break
        current = os.path.dirname(current)
    if not limits:
        return None
    working_set = max(0, usage - _stat(os.path.join(directory, "memory.stat"), "inactive_file"))
    return CgroupMemory(min(limits), working_set, 2)


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

    requires: ClassVar[tuple[tuple[str, str], ...]] = (("psutil", "health"),)

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
    """Memory utilisation against the limit that applies, and this process's resident size.

    Two entries: ``<name>:utilization`` (percent) and ``<name>:rss`` (this process, MiB).
    When the process's cgroup has a memory limit below the machine's memory (a container with
    ``resources.limits.memory``), utilisation is the cgroup's working set over that limit —
    what decides an OOM kill — and the entry says ``"scope": "cgroup"``; otherwise it is the
    system's memory as psutil reads it (``"scope": "system"``). Not critical by default.

    :param warn_percent: warn at or above this utilisation.
    :param fail_percent: fail at or above it.
    :param rss_warn_mib: warn when the process's RSS reaches this many MiB (``None``: never).
    :param rss_fail_mib: fail when it reaches this many MiB (``None``: never).
    :param cgroup: look for a cgroup memory limit (v1 or v2) first.
    """

    requires: ClassVar[tuple[tuple[str, str], ...]] = (("psutil", "health"),)

    critical: bool = False
    warn_percent: float = 90.0
    fail_percent: float = 95.0
    rss_warn_mib: float | None = None
    rss_fail_mib: float | None = None
    cgroup: bool = True
    _process: Any = field(default=None, init=False, repr=False, compare=False)

    component_type = "system"

    def run(self) -> list[Observation]:
        psutil = _psutil()
        if self._process is None or self._process.pid != os.getpid():  # first run, or forked
            self._process = psutil.Process()
        system = psutil.virtual_memory()
        rss_mib = self._process.memory_info().rss / MIB
        limited = cgroup_memory() if self.cgroup else None
        if limited is not None and limited.limit < system.total:
            percent = 100.0 * limited.working_set / limited.limit
            what = f"container memory {percent:.1f}% of its {limited.limit / MIB:.0f} MiB limit"
            extra: dict[str, Any] = {
                "scope": "cgroup",
                "workingSetBytes": limited.working_set,
                "limitBytes": limited.limit,
                "cgroupVersion": limited.version,
            }
        else:
            percent = system.percent
            what = f"system memory {percent:.1f}% used"
            extra = {
                "scope": "system",
                "availableBytes": system.available,
                "totalBytes": system.total,
            }
        sys_status = _level(percent, self.warn_percent, self.fail_percent)
        rss_status = _level(rss_mib, self.rss_warn_mib, self.rss_fail_mib)
        return [
            Observation(
                "utilization",
                round(percent, 1),
                "percent",
                sys_status,
                output=None if sys_status is Status.PASS else what,
                extra=extra,
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
