"""The private prometheus_client API that the dead-worker merge relies on keeps its shape.

``flask_observe.metrics.multiprocess`` folds a dead gunicorn worker's ``*.db`` files into archive
files with ``prometheus_client.mmap_dict.MmapedDict``, which is not public API. These tests fail
as soon as a release changes what the merge uses: the module and class, the four members and
their parameters, the records they read (``(key, value, timestamp, position)``), and the
file-name convention (``<kind>_<pid>.db``, ``gauge_<mode>_<pid>.db``) under which the public
``MultiProcessCollector`` reads what the merge writes. setup.cfg bounds prometheus_client to the
releases these tests passed on; raise the bound only after running them on the new release.

The request metrics (``flask_observe.metrics.http``) also record through a child's private
values (``_value``, ``_sum``, ``_upper_bounds``, ``_buckets``) where they have that shape, and
must write exactly what the public ``inc()`` and ``observe()`` write.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from flask_observe.metrics import multiprocess


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_mmaped_dict_members_have_the_shape_the_merge_calls() -> None:
    """``MmapedDict(filename)``, the static ``read_all_values_from_file(filename)``,
    ``write_value(key, value, timestamp)`` and ``close()``: each exists with these parameters."""
    from prometheus_client.mmap_dict import MmapedDict

    installed = version("prometheus_client")
    init = _parameters(MmapedDict.__init__)
    assert init[:2] == ["self", "filename"], (installed, init)
    # read_mode (when present) must stay optional: the merge opens files to write them.
    assert all(
        p.default is not inspect.Parameter.empty
        for p in list(inspect.signature(MmapedDict.__init__).parameters.values())[2:]
    ), init
    assert isinstance(inspect.getattr_static(MmapedDict, "read_all_values_from_file"), staticmethod)
    assert _parameters(MmapedDict.read_all_values_from_file) == ["filename"]
    assert _parameters(MmapedDict.write_value) == ["self", "key", "value", "timestamp"]
    assert _parameters(MmapedDict.close) == ["self"]


def test_records_round_trip_as_key_value_timestamp_position(tmp_path: Path) -> None:
    """What ``write_value`` stores, ``read_all_values_from_file`` gives back as one 4-tuple
    ``(str key, float value, float timestamp, int position)``; a second write of a key
    replaces its value (the merge writes each archive key once, with the combined value)."""
    from prometheus_client.mmap_dict import MmapedDict

    path = str(tmp_path / "counter_archive.db")
    key = '["jobs_total", "jobs_total", {"queue": "q1"}, "Jobs."]'
    target = MmapedDict(path)
    target.write_value(key, 2.0, 10.5)
    target.write_value(key, 5.0, 11.25)
    target.write_value('["other", "other", {}, "x"]', 1.0, 0.0)
    target.close()
    records = list(MmapedDict.read_all_values_from_file(path))
    assert len(records) == 2, records
    first = records[0]
    assert len(first) == 4, first
    got_key, value, timestamp, position = first
    assert (got_key, value, timestamp) == (key, 5.0, 11.25)
    assert isinstance(got_key, str)
    assert isinstance(position, int)


_WORKER = textwrap.dedent(
    """
    import os
    from prometheus_client import Counter, Gauge, Histogram

    Counter("jobs", "Jobs done.", ["queue"]).labels("q1").inc(3)
    Histogram("job_seconds", "Job time.", buckets=(0.1, 1.0)).observe(0.25)
    Gauge("last_job", "Last job time.", multiprocess_mode="max").set(1700.0)
    Gauge("temp", "Live value.", multiprocess_mode="all").set(1.0)
    print(os.getpid())
    """
)


def _run_worker(script: str, tmp_path: Path) -> tuple[Path, str]:
    """Run ``script`` as a process of its own in prometheus_client's multiprocess mode; its
    directory of files and what it printed."""
    directory = tmp_path / "prom"
    directory.mkdir()
    worker = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return directory, worker.stdout


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    return {
        (sample.name, tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))): (
            sample.value
        )
        for family in registry.collect()
        for sample in family.samples
        if family.name != "temp"  # an "all" gauge of a dead worker is dropped on purpose
    }


@pytest.mark.realtime
def test_a_real_workers_files_merge_into_archives_the_collector_reads(tmp_path: Path) -> None:
    """Files written by prometheus_client's own multiprocess metrics in a real process, merged
    by ``mark_process_dead`` into ``<kind>_archive.db`` / ``gauge_max_archive.db`` through
    ``MmapedDict``, are read by the public ``MultiProcessCollector`` with the same values."""
    directory, said = _run_worker(_WORKER, tmp_path)
    pid = int(said.split()[-1])
    written = sorted(p.name for p in directory.glob("*.db"))
    assert written == sorted(
        [f"counter_{pid}.db", f"histogram_{pid}.db", f"gauge_max_{pid}.db", f"gauge_all_{pid}.db"]
    ), written
    before = _samples(directory)
    assert before[("jobs_total", (("queue", "q1"),))] == 3.0
    assert before[("job_seconds_count", ())] == 1.0
    assert before[("last_job", ())] == 1700.0

    multiprocess.mark_process_dead(pid, str(directory))

    merged = sorted(p.name for p in directory.glob("*.db"))
    assert merged == ["counter_archive.db", "gauge_max_archive.db", "histogram_archive.db"]
    assert _samples(directory) == before


_HTTP_WORKER = textwrap.dedent(
    """
    from prometheus_client import CollectorRegistry

    from flask_observe.hooks import RequestRecord
    from flask_observe.metrics.http import HttpMetrics

    metrics = HttpMetrics(CollectorRegistry(), (0.005, 0.05, 0.5), exemplars=False)
    for seconds in (0.005, 0.0049, 0.02, 0.3, 0.1):
        record = RequestRecord({"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, None)
        record.route, record.status, record.duration = "/x", 200, seconds
        metrics.on_start(record)
        metrics.on_finish(record)
    (children,) = metrics._children.values()
    print("private" if children[2] is not None else "public")
    """
)


@pytest.mark.realtime
def test_in_multiprocess_mode_a_request_sum_adds_whole_quanta(tmp_path: Path) -> None:
    """A worker's request durations (prometheus_client's multiprocess values, through the
    private path): the sum in its file is a whole number of ``QUANTUM`` (so the workers'
    files add up exactly, in any order), within a quantum a request of the durations' sum;
    the buckets take each value as measured (0.005 on the bound of 0.005)."""
    from flask_observe.metrics.multiprocess import QUANTUM, exact

    directory, said = _run_worker(_HTTP_WORKER, tmp_path)
    assert said.split() == ["private"]
    samples = _samples(directory)
    labels = (("method", "GET"), ("route", "/x"))
    total = samples[("http_request_duration_seconds_sum", labels)]
    assert total == exact(total)
    assert 0.4299 - 5 * QUANTUM < total <= 0.4299
    bucket = ("http_request_duration_seconds_bucket", (("le", "0.005"), *labels))
    assert samples[bucket] == 2


def _http_samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float, Any]]:
    return [
        (
            sample.name,
            sample.labels,
            sample.value,
            None if sample.exemplar is None else (sample.exemplar.labels, sample.exemplar.value),
        )
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created") and not sample.name.startswith("http_requests_in")
    ]


def test_request_metrics_write_through_the_private_values_what_the_public_calls_write() -> None:
    """The same requests recorded by ``HttpMetrics`` (through the children's private values)
    and by ``Counter.inc()`` / ``Histogram.observe(amount, exemplar)`` on metrics of the same
    names give the same samples: counts, sums, every bucket (on a bound, between, above the
    last finite one) and the exemplars."""
    from prometheus_client import Counter, Histogram

    from flask_observe.hooks import RequestRecord
    from flask_observe.metrics.http import HttpMetrics

    buckets = (0.005, 0.05, 0.5, 5.0)
    fast_registry, public_registry = CollectorRegistry(), CollectorRegistry()
    fast = HttpMetrics(fast_registry, buckets, exemplars=True)
    labels = ("method", "route", "status")
    requests = Counter("http_requests", "x", labels, registry=public_registry)
    duration = Histogram(
        "http_request_duration_seconds",
        "x",
        labels[:2],
        buckets=buckets,
        registry=public_registry,
    )
    trace = "0af7651916cd43dd8448eb211c80319c"
    cases = [(0.0, None), (0.005, trace), (0.02, None), (0.5, trace), (7.5, trace), (0.0049, None)]
    for seconds, trace_id in cases:
        record = RequestRecord({"REQUEST_METHOD": "GET", "PATH_INFO": "/users/1"}, None)
        record.route, record.status, record.duration = "/users/<int:id>", 200, seconds
        record.trace_id = trace_id
        fast.on_start(record)
        fast.on_finish(record)
        requests.labels("GET", "/users/<int:id>", "200").inc()
        child = duration.labels("GET", "/users/<int:id>")
        child.observe(seconds, {"trace_id": trace_id} if trace_id else None)
    (recorders,) = fast._children.values()
    assert recorders[2] is not None, "the private shape was not recognised: the public calls ran"
    assert _http_samples(fast_registry) == _http_samples(public_registry)


def test_outbound_metrics_write_through_the_private_values_what_the_public_calls_write() -> None:
    """Outgoing calls recorded by ``OutboundMetrics`` (through the children's private values)
    and by ``Histogram.observe(amount, exemplar)`` / ``Gauge.set()`` on metrics of the same
    names give the same samples: every bucket, the sums, the exemplars, the gauges."""
    from prometheus_client import Gauge, Histogram
    from requests.structures import CaseInsensitiveDict

    from flask_observe.hooks import OutboundCall
    from flask_observe.metrics import Metrics
    from flask_observe.metrics.outbound import OutboundMetrics

    buckets = (0.01, 0.1, 1.0)
    trace = "0af7651916cd43dd8448eb211c80319c"
    traces = iter([None, trace, trace, None, trace])
    metrics = Metrics(buckets=buckets)
    fast = OutboundMetrics(
        metrics, ["api.example.com"], buckets=buckets, trace_lookup=lambda: next(traces)
    )
    public_registry = CollectorRegistry()
    labels = ("host", "method", "status_class")
    duration = Histogram(
        "http_client_request_duration_seconds",
        "x",
        labels,
        buckets=buckets,
        registry=public_registry,
    )
    remaining = Gauge("http_client_rate_limit_remaining", "x", ["host"], registry=public_registry)
    cases = [(0.0, "2xx", None), (0.01, "2xx", trace), (0.05, "2xx", trace), (3.0, "2xx", None)]
    cases.append((0.5, "5xx", trace))
    for seconds, status_class, trace_id in cases:
        status = 200 if status_class == "2xx" else 503
        headers = CaseInsensitiveDict({"RateLimit-Remaining": str(int(seconds * 10))})
        fast(OutboundCall("GET", "https://api.example.com/x", status, None, seconds, headers, 0))
        child = duration.labels("api.example.com", "GET", status_class)
        child.observe(seconds, {"trace_id": trace_id} if trace_id else None)
        remaining.labels("api.example.com").set(int(seconds * 10))
    cells = next(iter(fast._children.values()))
    assert cells[1] is not None, "the private shape was not recognised: the public calls ran"
    names = {"http_client_request_duration_seconds", "http_client_rate_limit_remaining"}
    kept = [s for s in _http_samples(metrics.registry) if s[0].startswith(tuple(names))]
    assert kept == _http_samples(public_registry)
