"""gunicorn with several workers: metrics summed across workers, files bounded on recycles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from flask_observe.metrics import multiprocess

from .peers import free_port

#: Real time and real processes (real gunicorn workers and their recycling):
#: CI runs these in a step of their own.
pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parent.parent


class Gunicorn:
    """``gunicorn -c python:flask_observe.contrib.gunicorn`` on a free loopback port."""

    def __init__(
        self, tmp_path: Path, app: str, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tmp_path / "prom"
        self.dir.mkdir(exist_ok=True)
        (self.dir / "stale_counter.db").write_bytes(b"left over from an earlier run")
        environment = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(self.dir),
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.log = (tmp_path / "gunicorn.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:flask_observe.contrib.gunicorn",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{self.port}",
                *extra,
                app,
            ],
            env=environment,
            cwd=str(tmp_path),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/metrics", timeout=1)
                return
            except (requests.ConnectionError, requests.Timeout):
                # The socket is bound before the workers have booted: on a busy machine the
                # first request can wait longer than a second for one.
                time.sleep(0.2)
        self.stop()
        raise AssertionError("gunicorn did not start: " + (tmp_path / "gunicorn.log").read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    started: list[Gunicorn] = []

    def start(*extra: str, app: str = "tests.apps.metrics_app:app", **kw: object) -> Gunicorn:
        server = Gunicorn(tmp_path, app, *extra, **kw)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(url + "/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


WORK = ("http_requests_total", (("method", "GET"), ("route", "/work"), ("status", "200")))


def test_counters_sum_across_two_workers(gunicorn: callable) -> None:  # type: ignore[valid-type]
    """Requests served by two different workers are all in every scrape, business counters
    too; the directory was wiped at start (the stale file is gone)."""
    server = gunicorn()
    assert not (server.dir / "stale_counter.db").exists()
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> int:
        # 20 ms of work with 6 callers at once: a sync worker serves one at a time, so both
        # workers must take some.
        response = requests.get(server.url + "/work?sleep=0.02", timeout=10)
        return int(response.json()["pid"])

    with ThreadPoolExecutor(6) as pool:
        pids = set(pool.map(one, range(200)))
    assert len(pids) == 2, "expected both workers to serve requests"
    for _ in range(3):  # whichever worker answers the scrape, it sees everything
        values = scrape(server.url)
        assert values[WORK] == 200
        assert values[("work_done_total", ())] == 200


def test_worker_recycles_keep_counts_and_bound_the_files(gunicorn: callable) -> None:  # type: ignore[valid-type]
    """max_requests=5 recycles a worker about every 5 requests: after 300 requests (~60
    recycles) every request is still counted and the directory holds a bounded set of files."""
    server = gunicorn("--max-requests", "5")
    session = requests.Session()
    for _ in range(300):
        assert session.get(server.url + "/work", timeout=10).status_code == 200
        session.close()
    time.sleep(1.0)  # let the master reap the last recycled workers
    files = [p for p in server.dir.iterdir() if p.suffix == ".db"]
    # Per live worker: counter, histogram, livesum/livemax/livemin/max/mostrecent gauges;
    # plus one archive per kind. Without the merge this would be ~60 x 2 files or more.
    assert len(files) <= 2 * 7 + 6, sorted(p.name for p in files)
    # Scrapes are not counted (/metrics is excluded), and recycled workers' counts are kept.
    # Each scrape may itself be the request that recycles a worker; still nothing is lost.
    assert scrape(server.url)[WORK] == 300
    assert scrape(server.url)[("work_done_total", ())] == 300


def test_mark_process_dead_merges_counters_and_combines_gauges(tmp_path: Path) -> None:
    """The merge adds counters of dead workers into the archive, keeps the max of ``max``
    gauges, and drops per-pid ``all`` gauges."""
    key = '["c", "c_total", {}, "doc"]'
    for pid, value in ((101, 2.0), (102, 3.0)):
        d = MmapedDict(str(tmp_path / f"counter_{pid}.db"))
        d.write_value(key, value, 0.0)
        d.close()
        g = MmapedDict(str(tmp_path / f"gauge_max_{pid}.db"))
        g.write_value('["g", "g", {}, "doc"]', value * 10, 0.0)
        g.close()
        a = MmapedDict(str(tmp_path / f"gauge_all_{pid}.db"))
        a.write_value('["a", "a", {}, "doc"]', 1.0, 0.0)
        a.close()
    multiprocess.mark_process_dead(101, str(tmp_path))
    multiprocess.mark_process_dead(102, str(tmp_path))
    names = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db")
    assert names == ["counter_archive.db", "gauge_max_archive.db"]
    archive = {
        k: v
        for k, v, _, _ in MmapedDict.read_all_values_from_file(str(tmp_path / "counter_archive.db"))
    }
    assert archive[key] == 5.0
    gauges = {
        k: v
        for k, v, _, _ in MmapedDict.read_all_values_from_file(
            str(tmp_path / "gauge_max_archive.db")
        )
    }
    assert list(gauges.values()) == [30.0]


def _scraped_total(path: Path) -> float:
    """``c_total`` as a scrape of the multiprocess files at ``path`` gives it."""
    registry: Any = multiprocess.collect_registry(str(path))
    (value,) = [s.value for m in registry.collect() for s in m.samples if s.name == "c_total"]
    return float(value)


def test_a_dead_workers_seconds_join_the_archive_without_the_total_stepping_down(
    tmp_path: Path,
) -> None:
    """Workers add durations to a counter (a histogram's sum, the CPU seconds), as
    ``exact()`` makes them; a scrape sums the files in directory order, and each worker that
    dies is merged into the archive: the same amounts, added in another order. The total
    never comes out lower than the scrape before (with the raw floats it did, by an ulp,
    which Prometheus' rate() reads as a counter reset)."""
    import random

    from flask_observe.metrics.multiprocess import exact

    key = '["c", "c_total", {}, "doc"]'
    rng = random.Random(7)
    for attempt in range(40):
        directory = tmp_path / str(attempt)
        directory.mkdir()
        pids = list(range(100, 108))
        for pid in pids:
            value = 0.0
            for _ in range(rng.randrange(1, 60)):
                value += exact(rng.expovariate(20.0))  # what MultiProcessValue.inc() does
            d = MmapedDict(str(directory / f"counter_{pid}.db"))
            d.write_value(key, value, 0.0)
            d.close()
        seen = [_scraped_total(directory)]
        rng.shuffle(pids)
        for pid in pids:
            multiprocess.mark_process_dead(pid, str(directory))
            seen.append(_scraped_total(directory))
        assert seen == sorted(seen), (attempt, seen)
        assert len(set(seen)) == 1, (attempt, seen)  # nothing counted again or lost


def test_wipe_removes_metric_files_only(tmp_path: Path) -> None:
    """The start-up wipe removes every ``*.db`` file (prometheus_client would sum them all) and
    nothing else: a PROMETHEUS_MULTIPROC_DIR pointed at a directory in use by mistake keeps its
    other files and sub-directories."""
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "stale_counter.db").write_bytes(b"old")
    (tmp_path / "gauge_livesum_9.db").write_bytes(b"old")
    (tmp_path / "app.py").write_text("print('keep me')")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "counter_1.db").write_bytes(b"keep: not prometheus_client's")
    multiprocess.wipe(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.py", "data"]
    assert (tmp_path / "data" / "counter_1.db").exists()
    multiprocess.wipe(str(tmp_path / "new" / "dir"))
    assert (tmp_path / "new" / "dir").is_dir()


def test_workers_cpu_seconds_add_up_across_workers_and_recycles(gunicorn: callable) -> None:  # type: ignore[valid-type]
    """Under gunicorn (no ProcessCollector there) every scrape shows the CPU seconds of every
    worker, recycled ones included: the total only grows, and grows by at least the CPU the
    requests burned; ``app_info`` is 1 once, whatever the number of workers."""
    server = gunicorn("--max-requests", "20")
    cpu = ("flask_observe_workers_cpu_seconds_total", ())
    before = scrape(server.url).get(cpu, 0.0)
    session = requests.Session()
    seen = [before]
    for _ in range(6):
        for _ in range(10):
            assert session.get(server.url + "/burn?seconds=0.05", timeout=10).status_code == 200
        session.close()
        seen.append(scrape(server.url)[cpu])
    time.sleep(1.0)  # the master reaps the recycled workers and merges their files
    seen.append(scrape(server.url)[cpu])
    assert seen == sorted(seen), seen
    # 60 requests each burning 50 ms of CPU in the workers.
    assert seen[-1] - before >= 60 * 0.05 * 0.8, seen
    info = [k for k in scrape(server.url) if k[0] == "app_info"]
    assert len(info) == 1
    labels = dict(info[0][1])
    assert labels["service"] == "mp-app"
    assert set(labels) == {
        "service",
        "version",
        "environment",
        "flask_observe_version",
        "flask_version",
        "python_version",
    }
    assert scrape(server.url)[info[0]] == 1
