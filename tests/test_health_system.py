"""Disk and memory checks read the real machine through psutil; thresholds decide the status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from flask import Flask

from flask_observe.health import DiskCheck, HealthRunner, MemoryCheck, Status


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
    import json
    import os

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
