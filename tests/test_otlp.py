"""Logs and metrics over OTLP (issue 12, item 5), against the real OTLP/gRPC receiver of
tests/peers.py: the same log records the files get (correlation and trace IDs, extras, the
access line, exceptions, the service resource), the request/outbound/SQL metrics under their
semantic-convention names with the advisory buckets and trace-ID exemplars, the SDK's
switches, and what is never exported back into itself."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from flask_observe import Observe
from flask_observe.otlp import OtlpLogs
from flask_observe.otlp.metrics import HTTP_BUCKETS, OtlpMetrics, temporality_preference
from flask_observe.otlp.settings import OtlpSettings
from flask_observe.otlp.setup import exporter_of
from flask_observe.state import current_state

from .conftest import LiveServer, read_json_lines
from .peers import ROOT, OtlpReceiver, server_env

pytestmark = pytest.mark.services  # a real gRPC receiver on loopback


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def otlp_app(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, tmp_path: Path, **config: Any
) -> Flask:
    settings: dict[str, Any] = {
        "log_stdout": False,
        "log_dir": str(tmp_path),
        "service_name": "otlp-test",
        "tracing_endpoint": receiver.endpoint,
        "tracing_sample_rate": 1.0,
        "otlp_logs_endpoint": receiver.endpoint,
        "otlp_metrics_endpoint": receiver.endpoint,
        "otlp_metrics_interval_seconds": 3600,  # exported at shutdown, once
        **config,
    }
    app = make_app("otlp-test", **settings)
    logger = logging.getLogger("otlp_test.view")

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> dict[str, Any]:
        logger.info("served user", extra={"user_id": user_id, "tags": ["a", "b"], "meta": {"x": 1}})
        return {"id": user_id}

    @app.get("/boom")
    def boom() -> str:
        try:
            raise ValueError("exploded on purpose")
        except ValueError:
            logger.exception("it broke")
        return "handled"

    return app


def get(client: Any, path: str) -> int:
    """One request, its body consumed and closed (the access line is written then)."""
    with client.get(path) as response:
        response.get_data()
        return int(response.status_code)


def shut_down(app: Flask) -> None:
    Observe().shutdown(app)


def test_every_log_line_goes_over_otlp_with_the_same_fields_as_the_file(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """The view's line and the access line: body, severity, the span's trace and span IDs on
    the record itself, correlation_id and extras as attributes (a list as a list, a mapping as
    its JSON), the service on the resource (not repeated per record), the logger as the scope;
    an exception's type and stack trace. The file has the same lines."""
    app = otlp_app(make_app, receiver, tmp_path)
    client = app.test_client()
    with client.get("/users/42", headers={"X-Request-ID": "req-otlp-1"}) as response:
        assert response.status_code == 200
    get(client, "/boom")
    shut_down(app)

    records = receiver.log_records()
    view = next(r for r in records if r["body"] == "served user")
    assert view["severity_text"] == "INFO"
    assert view["severity_number"] == 9
    assert view["scope"] == "otlp_test.view"
    assert view["service"] == "otlp-test"
    assert view["attributes"]["correlation_id"] == "req-otlp-1"
    assert view["attributes"]["user_id"] == 42
    assert view["attributes"]["tags"] == ["a", "b"]
    assert view["attributes"]["meta"] == '{"x":1}'
    assert "service" not in view["attributes"]
    assert "timestamp" not in view["attributes"]
    span = next(s for s in receiver.spans() if s["kind"] == "SERVER" and "42" in str(s))
    assert view["trace_id"] == span["trace_id"]
    assert view["span_id"] == span["span_id"]
    access = next((r for r in records if r["body"] == "GET /users/<int:user_id> 200"), None)
    assert access is not None, [(r["scope"], r["body"]) for r in records]
    assert access["scope"] == "flask_observe.access"
    assert access["trace_id"] == span["trace_id"]
    assert access["attributes"]["correlation_id"] == "req-otlp-1"
    assert access["attributes"]["status"] == 200
    assert access["attributes"]["route"] == "/users/<int:user_id>"
    broke = next(r for r in records if r["body"] == "it broke")
    assert broke["severity_text"] == "ERROR"
    assert broke["attributes"]["exception.type"] == "ValueError"
    assert "exploded on purpose" in broke["attributes"]["exception.stacktrace"]

    in_file = {line["message"] for line in read_json_lines(tmp_path / "app.log")}
    assert {"served user", "GET /users/<int:user_id> 200", "it broke"} <= in_file


def test_the_pipelines_own_failures_are_never_exported_into_it(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """Records of the SDK's loggers and anything logged on an export thread reach the file,
    never the OTLP pipeline (an exporter complaining about the collector would feed it)."""
    app = otlp_app(make_app, receiver, tmp_path)
    logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter").warning("sdk complains")

    def on_export_thread() -> None:
        logging.getLogger("urllib3.connectionpool").warning("retrying the collector")

    thread = threading.Thread(target=on_export_thread, name="OtelBatchLogRecordProcessor")
    thread.start()
    thread.join()
    logging.getLogger("otlp_test").warning("a host line")
    shut_down(app)
    bodies = {r["body"] for r in receiver.log_records()}
    assert "a host line" in bodies
    assert not {"sdk complains", "retrying the collector"} & bodies
    in_file = {line["message"] for line in read_json_lines(tmp_path / "app.log")}
    assert {"sdk complains", "retrying the collector", "a host line"} <= in_file


def test_request_metrics_use_the_semantic_conventions_with_advisory_buckets_and_exemplars(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """http.server.request.duration (s, histogram, the advisory buckets) by method, route,
    status, scheme and protocol, error.type on a 5xx; an exemplar with the request's trace
    ID; http.server.active_requests back at 0; process.uptime; probes left out; the spans'
    service.instance.id on the metrics."""
    app = otlp_app(make_app, receiver, tmp_path)

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("boom")

    client = app.test_client()
    for _ in range(3):
        assert get(client, "/users/7") == 200
    assert get(client, "/fail") == 500
    assert get(client, "/health/live") in (200, 404)
    shut_down(app)

    points = receiver.metric_points()
    server = [p for p in points if p["name"] == "http.server.request.duration"]
    ok = next(p for p in server if p["attributes"].get("http.route") == "/users/<int:user_id>")
    assert ok["kind"] == "histogram"
    assert ok["unit"] == "s"
    assert ok["count"] == 3
    assert ok["explicit_bounds"] == list(HTTP_BUCKETS)
    assert ok["attributes"] == {
        "http.request.method": "GET",
        "http.route": "/users/<int:user_id>",
        "http.response.status_code": 200,
        "url.scheme": "http",
        "network.protocol.version": "1.1",
    }
    spans = {s["trace_id"] for s in receiver.spans() if s["kind"] == "SERVER"}
    assert [e["trace_id"] for e in ok["exemplars"]]
    assert ok["exemplars"][0]["trace_id"] in spans
    failed = next(p for p in server if p["attributes"].get("http.route") == "/fail")
    assert failed["attributes"]["error.type"] == "500"
    assert not any("/health" in str(p["attributes"].get("http.route")) for p in server)
    (active,) = [p for p in points if p["name"] == "http.server.active_requests"]
    assert active["kind"] == "sum"
    assert not active["monotonic"]
    assert active["value"] == 0
    assert active["attributes"] == {"http.request.method": "GET", "url.scheme": "http"}
    (uptime,) = [p for p in points if p["name"] == "process.uptime"]
    assert uptime["value"] > 0
    assert {p["service"] for p in points} == {"otlp-test"}
    (instance,) = {p["resource"]["service.instance.id"] for p in points}
    assert {s["resource"]["service.instance.id"] for s in receiver.spans()} == {instance}


def test_outbound_calls_and_sql_statements_are_timed_too(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """http.client.request.duration by declared host (any other: _OTHER, bounded), port,
    status and error.type; db.client.operation.duration by system and operation."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    upstream = Flask("upstream")

    @upstream.get("/ok")
    def ok() -> str:
        return "ok"

    with LiveServer(upstream) as server:
        host = server.url.split("://", 1)[1]
        app = otlp_app(make_app, receiver, tmp_path, metrics_outbound_hosts=[host])
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")

        @app.get("/work")
        def work() -> str:
            requests.get(f"{server.url}/ok", timeout=5)
            requests.get(f"{server.url}/missing", timeout=5)
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
            return "done"

        assert get(app.test_client(), "/work") == 200
        shut_down(app)
    points = receiver.metric_points()
    client = [p for p in points if p["name"] == "http.client.request.duration"]
    statuses = {p["attributes"]["http.response.status_code"]: p for p in client}
    assert set(statuses) == {200, 404}
    assert statuses[200]["attributes"]["server.address"] == "127.0.0.1"
    assert statuses[200]["attributes"]["server.port"] == int(host.rsplit(":", 1)[1])
    assert statuses[404]["attributes"]["error.type"] == "404"
    db = [p for p in points if p["name"] == "db.client.operation.duration"]
    select = next(p for p in db if p["attributes"]["db.operation.name"] == "SELECT")
    assert select["attributes"]["db.system.name"] == "sqlite"
    assert select["count"] >= 1
    engine.dispose()


def test_the_sdks_switches_decide_like_for_any_sdk_exporter() -> None:
    """OTEL_LOGS_EXPORTER/OTEL_METRICS_EXPORTER (otlp, console, none), per-signal endpoints
    and protocols; the traces' generic OTEL_EXPORTER_OTLP_ENDPOINT alone turns neither on."""
    default = OtlpSettings()
    assert exporter_of("logs", default, {}) == "none"
    assert exporter_of("logs", default, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}) == "none"
    assert exporter_of("logs", default, {"OTEL_LOGS_EXPORTER": "otlp"}) == "otlp-grpc"
    assert (
        exporter_of(
            "metrics",
            default,
            {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
        )
        == "otlp-http"
    )
    assert (
        exporter_of("metrics", default, {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318"})
        == "otlp-grpc"
    )
    assert exporter_of("logs", default, {"OTEL_LOGS_EXPORTER": "console"}) == "console"
    forced = OtlpSettings(otlp_logs_enabled=True)
    assert exporter_of("logs", forced, {}) == "otlp-grpc"
    assert exporter_of("logs", forced, {"OTEL_LOGS_EXPORTER": "none"}) == "none"
    off = OtlpSettings(otlp_metrics_enabled=False)
    assert exporter_of("metrics", off, {"OTEL_METRICS_EXPORTER": "otlp"}) == "none"
    delta = temporality_preference({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"})
    assert {k.__name__: v.name for k, v in delta.items()}["Histogram"] == "DELTA"
    assert {k.__name__: v.name for k, v in delta.items()}["UpDownCounter"] == "CUMULATIVE"


def test_environment_variables_alone_turn_both_on(
    make_app: Callable[..., Flask],
    receiver: OtlpReceiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    app = make_app("env-only", log_stdout=False, log_dir=str(tmp_path))
    state = current_state(app)
    logs, metrics = state.get(OtlpLogs), state.get(OtlpMetrics)
    assert logs is not None
    assert logs.exporter_name == "otlp-grpc"
    assert metrics is not None
    assert metrics.exporter_name == "otlp-grpc"
    logging.getLogger("env_only").warning("from the environment")
    shut_down(app)
    assert any(r["body"] == "from the environment" for r in receiver.log_records())
    assert receiver.metric_points()


def test_off_by_default() -> None:
    app = Flask("plain")
    app.config.update(OBSERVE_LOG_STDOUT=False)
    Observe(app)
    try:
        assert current_state(app).get(OtlpLogs) is None
        assert current_state(app).get(OtlpMetrics) is None
    finally:
        Observe().shutdown(app)


def forked_exporter(kind: str) -> dict[str, Any]:
    """What ``tests.apps.forked_exporter`` says of its child, forked by ``kind`` (``os`` or
    ``libc``): the child's exported bodies (``child``), its ``status`` and the ``batch_size``."""
    import json
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "tests.apps.forked_exporter", kind],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    said: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return said


@pytest.mark.realtime  # a process of its own, and a child that waits for its export thread
def test_a_forked_childs_lines_wake_its_own_export_thread() -> None:
    """gunicorn --preload forks after lines went straight into the SDK's queue: in the child,
    the next line goes through the SDK's emit again (which remakes its queue's thread), so a
    full batch wakes the child's export thread, not the parent's, long before the schedule
    delay (ten minutes)."""
    import os

    said = forked_exporter("os")
    assert said["child"] == [f"child {n}" for n in range(said["batch_size"])], said
    assert os.WIFEXITED(said["status"]), said
    assert os.WEXITSTATUS(said["status"]) == 0, said


@pytest.mark.realtime
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libc fork() through ctypes")
def test_a_child_forked_without_pythons_fork_hooks_exports_its_lines() -> None:
    """uWSGI forks its workers in C and, by default, calls no ``PyOS_AfterFork_Child``: no
    ``os.register_at_fork`` hook runs in the child. Its lines still go through the SDK's emit
    first (which notices the new process and starts its export thread again), so a full batch
    is exported, not queued where no thread exports it.

    Forked in a process of its own, which has no threads but the pipeline's export thread (a
    uWSGI master has few): forked in the test process, among the threads earlier tests left,
    the child died of SIGSEGV in the interpreter itself on 3.13 (CPython does not support a
    fork without its hooks), three times in a row in one CI run. A child killed by a signal
    before it said anything is still forked again, at most three times: that death is the
    interpreter's, not the pipeline's."""
    import os

    for _ in range(3):  # a child killed before it said anything is forked again
        said = forked_exporter("libc")
        if said["child"] is not None or not os.WIFSIGNALED(said["status"]):
            break
    assert said["child"] == [f"child {n}" for n in range(said["batch_size"])], said
    assert os.WIFEXITED(said["status"]), said
    assert os.WEXITSTATUS(said["status"]) == 0, said


def test_a_forked_child_reports_its_own_counts_under_its_own_instance_id() -> None:
    """gunicorn --preload forks after set-up: the child starts from empty histograms and
    reports under a service.instance.id (and process.pid) of its own."""
    import json
    import os

    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
    from opentelemetry.sdk.resources import Resource

    from flask_observe.hooks import RequestRecord
    from flask_observe.otlp.metrics import MetricsPipeline

    pipeline = MetricsPipeline(
        Resource.create({"service.name": "forked"}), ConsoleMetricExporter, {}, interval=3600
    )
    record = RequestRecord({"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, None)
    record.route, record.status, record.duration = "/x", 200, 0.01
    pipeline.on_start(record)
    pipeline.on_finish(record)
    parent_id = pipeline._instance.resource().attributes["service.instance.id"]
    assert sum(cell.recorded() for cell in pipeline.server.cells.values()) == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            result = {
                "count": sum(cell.recorded() for cell in pipeline.server.cells.values()),
                "instance": pipeline._instance.resource().attributes["service.instance.id"],
                "pid": pipeline._instance.resource().attributes["process.pid"],
            }
            os.write(write, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = json.loads(pipe.read())
    os.waitpid(pid, 0)
    pipeline.shutdown()
    assert child["count"] == 0
    assert child["instance"] != parent_id
    assert child["pid"] == pid


def test_lines_put_after_the_pipeline_shut_down_are_dropped_and_counted() -> None:
    """The queue's fast path is taken only in the process the SDK's emit checked and while
    the pipeline runs: a line after shutdown is counted as dropped, never left in a queue no
    thread exports."""
    from opentelemetry.sdk.resources import Resource

    from flask_observe.otlp.logs import LogsPipeline

    pipeline = LogsPipeline(Resource.create({}), lambda: None)
    pipeline.put(1.0, logging.INFO, "x", {"message": "first: through the SDK's emit"})
    pipeline.put(2.0, logging.INFO, "x", {"message": "second: straight into its queue"})
    assert pipeline.stats()["queued"] == 2
    pipeline.shutdown()
    queued = pipeline.stats()["queued"]
    pipeline.put(3.0, logging.INFO, "x", {"message": "after"})
    assert pipeline.stats()["queued"] == queued
    assert pipeline.dropped == 1
