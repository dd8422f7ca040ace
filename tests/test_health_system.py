"""Disk and memory checks read the real machine through psutil; thresholds decide the status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from flask import Flask

from flask_observe.health import DiskCheck, HealthRunner, MemoryCheck, Status
from flask_observe.health.system import CgroupMemory, cgroup_memory


@pytest.fixture
def runner() -> Iterator[HealthRunner]:
    app = Flask("system")
    runner = HealthRunner(app, cache_ttl=0)
    yield runner
    runner.close()


def test_disk_utilisation_matches_psutil_and_thresholds_apply(
    runner: HealthRunner, tmp_path: Path
) -> None:
    """The observed value is the file system's use in percent; at/above warn → warn, at/above
    fail → fail; a full disk is not critical by default (the service only warns)."""
    used = psutil.disk_usage(str(tmp_path)).percent
    runner.add(DiskCheck("disk", path=str(tmp_path)))
    runner.add(DiskCheck("disk-warn", path=str(tmp_path), warn_percent=0, fail_percent=101))
    runner.add(DiskCheck("disk-fail", path=str(tmp_path), warn_percent=0, fail_percent=0))
    ok, warn, fail = runner.run().results
    obs = ok.observations[0]
    assert (obs.measurement, obs.unit, ok.status) == ("utilization", "percent", Status.PASS)
    assert abs(obs.value - used) < 2
    assert obs.extra["freeBytes"] > 0
    assert warn.status is Status.WARN
    assert fail.status is Status.FAIL
    assert fail.output is not None
    assert "% used" in fail.output
    assert not fail.critical
    assert runner.run().status is Status.WARN


def test_memory_reports_system_utilisation_and_process_rss(runner: HealthRunner) -> None:
    """Two entries: system utilisation (percent) and this process's RSS (MiB), each with its
    own thresholds."""
    rss = psutil.Process().memory_info().rss / 2**20
    runner.add(MemoryCheck("memory"))
    runner.add(MemoryCheck("memory-rss", rss_warn_mib=1, rss_fail_mib=None))
    runner.add(MemoryCheck("memory-sys", fail_percent=0))
    ok, rss_warn, sys_fail = runner.run().results
    utilization, resident = ok.observations
    assert (utilization.measurement, utilization.unit) == ("utilization", "percent")
    assert (resident.measurement, resident.unit) == ("rss", "MiB")
    assert abs(resident.value - rss) < rss * 0.5
    assert ok.status is Status.PASS
    assert rss_warn.status is Status.WARN
    assert rss_warn.observations[1].status is Status.WARN
    assert sys_fail.status is Status.FAIL


def test_memory_check_measures_the_process_it_runs_in_after_a_fork() -> None:
    """A MemoryCheck that ran before a fork (gunicorn --preload, a start-up check in the
    master) reports the child's own RSS afterwards, not the parent's."""
    check = MemoryCheck("memory")
    check.run()  # in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ballast = bytearray(200 * 2**20)  # 200 MiB more resident in the child only
            ballast[::4096] = b"x" * len(ballast[::4096])
            rss = check.run()[1].value
            os.write(
                write,
                json.dumps(
                    {"rss": rss, "own": psutil.Process().memory_info().rss / 2**20}
                ).encode(),
            )
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    os.waitpid(pid, 0)
    report = json.loads(os.read(read, 4096))
    os.close(read)
    assert abs(report["rss"] - report["own"]) < 20, report
    assert report["rss"] > psutil.Process().memory_info().rss / 2**20 + 100, report


_V1_MEMORY = Path("/sys/fs/cgroup/memory")


def _can_make_v1_memory_cgroup() -> bool:
    return _V1_MEMORY.is_dir() and os.access(_V1_MEMORY, os.W_OK)


_CHILD = """
import json, os, sys
with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as fh:
    fh.write(str(os.getpid()))
from flask_observe.health import MemoryCheck
check = MemoryCheck("memory", warn_percent=50, fail_percent=90)
before = check.run()[0]
ballast = bytearray(300 * 2**20)
ballast[::4096] = b"x" * len(ballast[::4096])  # resident, not just reserved
after = check.run()[0]
print(json.dumps([[o.value, o.status.value, o.extra] for o in (before, after)]))
"""


@pytest.mark.realtime
@pytest.mark.skipif(
    not _can_make_v1_memory_cgroup(), reason="needs a writable cgroup v1 memory hierarchy (root)"
)
def test_memory_check_reports_against_a_real_cgroup_limit(tmp_path: Path) -> None:
    """A process in a memory cgroup limited to 512 MiB (as a container is) is measured against
    that limit, not the machine's memory: 300 MiB more resident takes it from pass to warn."""
    group = _V1_MEMORY / f"flask_observe_test_{os.getpid()}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(512 * 2**20))
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(group)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        (before_value, before_status, extra), (after_value, after_status, _) = json.loads(
            proc.stdout
        )
    finally:
        for _ in range(50):  # the child's pages are uncharged shortly after it exits
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    assert extra["scope"] == "cgroup"
    assert extra["limitBytes"] == 512 * 2**20
    assert extra["cgroupVersion"] == 1
    assert before_status == "pass"
    assert before_value < 40
    assert after_status == "warn"
    assert 58 <= after_value < 90  # 300 MiB of 512 plus the interpreter
    assert after_value - before_value >= 55


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_is_the_lowest_up_the_hierarchy(tmp_path: Path) -> None:
    """cgroup v2 (the unified hierarchy of current distributions and Kubernetes nodes): the
    effective limit is the lowest ``memory.max`` from the group up to the root, ``max`` means
    none, and the working set leaves out inactive file cache."""
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpu memory pids\n")
    _write(root / "kubepods" / "memory.max", f"{2**30}\n")
    _write(root / "kubepods" / "pod1" / "memory.max", "max\n")
    container = root / "kubepods" / "pod1" / "ctr"
    _write(container / "memory.max", f"{2 * 2**30}\n")
    _write(container / "memory.current", f"{600 * 2**20}\n")
    _write(container / "memory.stat", f"anon 1\ninactive_file {100 * 2**20}\nactive_file 5\n")
    _write(tmp_path / "proc_cgroup", "0::/kubepods/pod1/ctr\n")
    found = cgroup_memory(str(tmp_path / "proc_cgroup"), str(root))
    assert found == CgroupMemory(limit=2**30, working_set=500 * 2**20, version=2)
    # A container with its own cgroup namespace sees "/" and its group at the mount's root.
    _write(tmp_path / "proc_cgroup_ns", "0::/\n")
    _write(root / "memory.max", f"{256 * 2**20}\n")
    _write(root / "memory.current", f"{64 * 2**20}\n")
    found = cgroup_memory(str(tmp_path / "proc_cgroup_ns"), str(root))
    assert found == CgroupMemory(limit=256 * 2**20, working_set=64 * 2**20, version=2)
    # No limit anywhere: None, and the check falls back to the system's memory.
    (root / "memory.max").write_text("max\n")
    (root / "kubepods" / "memory.max").write_text("max\n")
    (container / "memory.max").write_text("max\n")
    assert cgroup_memory(str(tmp_path / "proc_cgroup"), str(root)) is None
    assert cgroup_memory(str(tmp_path / "missing"), str(root)) is None


def test_memory_check_without_a_cgroup_limit_reports_the_system(runner: HealthRunner) -> None:
    """Outside a limited cgroup (this process here, or cgroup=False) utilisation is the
    system's, as psutil reads it."""
    runner.add(MemoryCheck("memory", cgroup=False))
    (result,) = runner.run().results
    utilization = result.observations[0]
    assert utilization.extra["scope"] == "system"
    assert abs(utilization.value - psutil.virtual_memory().percent) < 5
    assert utilization.extra["totalBytes"] == psutil.virtual_memory().total
