"""OTLP logs and metrics with the collector down or hung, proven as for traces
(tests/test_tracing_faults.py): requests unaffected, memory and queues bounded with the drops
counted and logged, shutdown within its deadline, a process exiting within the shared exit
deadline after SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from flask_observe import Observe
from flask_observe.otlp import OtlpLogs
from flask_observe.otlp.metrics import OtlpMetrics
from flask_observe.state import current_state

from .conftest import HungServer, read_json_lines
from .peers import OtlpReceiver, server_env, start_server, wait_for

pytestmark = pytest.mark.realtime


@pytest.fixture(params=["stopped", "hung", "hung-grpc"])
def dead_collector(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A refused port (a receiver that ran, then stopped), a TCP listener that never
    answers, a gRPC receiver that accepts each logs and metrics export and never answers."""
    if request.param == "stopped":
        with OtlpReceiver() as receiver:
            endpoint = receiver.endpoint
        yield "stopped", endpoint
    elif request.param == "hung":
        with HungServer() as hung:
            yield "hung", f"http://127.0.0.1:{hung.port}"
    else:
        with OtlpReceiver(hang={"logs", "metrics"}) as stuck:
            yield "hung", stuck.endpoint
            assert stuck.calls_by_signal["logs"] >= 1, "the exporter never reached the receiver"


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_dead_collector_costs_requests_nothing_and_log_lines_are_dropped_and_counted(
    make_app: Callable[..., Flask],
    dead_collector: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Every request answers 200; the hand-off queue and the SDK's stay at their bounds while
    the extra lines are dropped, counted and the count logged (in the file); memory stays flat
    over 100 000 more lines; shutdown returns within its 2 s deadline (+ tolerance) although
    lines are still queued, and says how many were not exported."""
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "256")
    monkeypatch.setenv("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "64")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1")
    _, endpoint = dead_collector
    app = make_app(
        "doomed",
        log_stdout=False,
        log_dir=str(tmp_path),
        log_rotate_bytes=0,  # one file to read back
        otlp_logs_endpoint=endpoint,
        otlp_logs_queue_size=512,
        otlp_metrics_endpoint=endpoint,
        otlp_metrics_interval_seconds=0.2,
    )
    view = logging.getLogger("doomed.view")

    @app.get("/work")
    def work() -> str:
        view.info("working")
        return "ok"

    client = app.test_client()
    statuses = set()
    for _ in range(600):
        with client.get("/work") as response:
            statuses.add(response.status_code)
    assert statuses == {200}
    logs = current_state(app).get(OtlpLogs)
    assert logs is not None
    pipeline = logs.pipeline
    capacity = 512 + 256

    def stats() -> dict[str, Any]:
        found = pipeline.stats()
        assert found["exported"] == 0
        assert found["queued"] <= capacity, found  # type: ignore[operator]
        return found

    # pytest's own capture handlers keep every record in memory: out of the way while the
    # memory is measured.
    root = logging.getLogger()
    pytest_handlers = [h for h in root.handlers if type(h).__module__.startswith("_pytest")]
    for handler in pytest_handlers:
        root.removeHandler(handler)
    try:
        for _ in range(10_000):
            view.info("warm-up line")
        before = rss_bytes()
        for _ in range(100_000):
            view.info("dropped line", extra={"n": 1})
        grown = rss_bytes() - before
    finally:
        for handler in pytest_handlers:
            root.addHandler(handler)
    assert grown < 8 * 1024 * 1024, f"RSS grew {grown / 1e6:.1f} MB over 100k dropped lines"
    assert stats()["dropped"] > 100_000 - capacity

    def drop_report() -> list[dict[str, Any]]:
        return [
            line
            for line in read_json_lines(tmp_path / "app.log")
            if "log lines not exported" in line["message"]
        ]

    assert wait_for(drop_report, 15), "the dropped count was never logged"
    metrics = current_state(app).get(OtlpMetrics)
    assert metrics is not None
    assert (
        wait_for(lambda: metrics.stats()["export_failed"] >= 1, 15) or dead_collector[0] == "hung"
    )

    started = time.monotonic()
    Observe().shutdown(app)
    elapsed = time.monotonic() - started
    # Two pipelines shut down one after the other here (at exit they share one deadline).
    assert elapsed <= 2 * 2.0 + 1.0, elapsed
    lost = [
        line
        for line in read_json_lines(tmp_path / "app.log")
        if "were not exported" in line["message"]
    ]
    assert lost, "shutdown did not say what was lost"


#: As for traces: every exit flush shares one deadline (2 s by default), less a reserve for the
#: interpreter's teardown; the tolerance is for teardown on a loaded machine.
EXIT_BUDGET = 2.0 + 1.0


def test_sigterm_exits_within_the_shared_deadline_with_a_hung_collector(tmp_path: Path) -> None:
    """A server exporting spans, log lines and metrics to a collector that accepts and never
    answers exits within the budget after SIGTERM: the three flushes wait side by side."""
    with HungServer() as hung:
        endpoint = f"http://127.0.0.1:{hung.port}"
        env = server_env(
            FLASK_OBSERVE_LOG_DIR=str(tmp_path),
            FLASK_OBSERVE_TRACING_ENDPOINT=endpoint,
            FLASK_OBSERVE_OTLP_LOGS_ENDPOINT=endpoint,
            FLASK_OBSERVE_OTLP_METRICS_ENDPOINT=endpoint,
            FLASK_OBSERVE_OTLP_METRICS_INTERVAL_SECONDS="0.5",
            OTEL_EXPORTER_OTLP_TIMEOUT="30",
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_BLRP_SCHEDULE_DELAY="100",
        )
        proc, url = start_server(env)
        try:
            with requests.Session() as session:
                for _ in range(300):
                    assert session.get(f"{url}/work", timeout=5).status_code == 200
            assert wait_for(lambda: hung.accepted >= 1, 10)
            started, signalled_at = time.monotonic(), time.time()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            elapsed = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
    output = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0, output
    lines = read_json_lines(tmp_path / "app.log")
    messages = [line["message"] for line in lines]
    assert any("log lines were not exported" in m for m in messages), messages[-10:]
    # The flushes gave up at the shared deadline: what they could not send is said within 2 s
    # of the signal (the process's own clock, before the interpreter's teardown).
    said = [
        datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
        for line in lines
        if "not exported" in line["message"]
    ]
    assert max(said) - signalled_at <= 2.0 + 0.3, f"said after {max(said) - signalled_at:.2f} s"
    # Then the teardown, which a loaded machine slows (C-level finalization, 0.2-3 s).
    assert elapsed <= EXIT_BUDGET + 1.5, f"exit took {elapsed:.2f} s\n{output[-2000:]}"
