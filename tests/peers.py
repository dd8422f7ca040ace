"""Real peers on loopback for the tracing and error-reporting tests.

- :class:`OtlpReceiver`: an OTLP/gRPC receiver — a ``grpcio`` server with the
  ``TraceService``, ``LogsService`` and ``MetricsService`` of ``opentelemetry-proto`` on one
  port — recording every export request per signal.
- In modules of their own: :mod:`tests.alertmanager_peer` (a real Alertmanager and its
  receivers) and :mod:`tests.collector_peer` (a real OTLP collector, Rotel).
- :class:`SentryReceiver`: an HTTP server used as a Sentry DSN, recording every envelope.
- :class:`HungServer` (from ``conftest``): a TCP listener that accepts and never answers.
- :func:`refused_port`: a port nothing listens on.
- :func:`celery_worker`: a real Celery worker in a subprocess; :func:`stop_process` stops one.
- :class:`PrivateRedis`: a redis-server of the test's own on a free port, to stop and start
  (the shared one on 6379 is never touched); :func:`free_port`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from .conftest import REQUIRE_SERVICES, LiveServer

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(any_value, kind)
    if kind == "array_value":
        return [_value(v) for v in value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.values}
    return value


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


#: The OTLP signals the receiver serves, each its own gRPC service on the one port.
SIGNALS = ("traces", "logs", "metrics")


class OtlpReceiver:
    """An OTLP/gRPC collector stand-in on ``127.0.0.1:<port>`` that records what it gets: the
    ``TraceService``, ``LogsService`` and ``MetricsService`` of ``opentelemetry-proto`` on one
    port, every export request kept per signal (``received["logs"]``…; ``requests`` and
    ``metadata`` are the traces' own, as before).

    :param hang: accept each export call and never answer it (until stopped): a collector
        that is up at the gRPC level but stuck. ``True`` for every signal, or a collection of
        signal names (``{"logs"}``) for those only.
    """

    def __init__(self, hang: bool | Collection[str] = False) -> None:
        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import (
            metrics_service_pb2,
            metrics_service_pb2_grpc,
        )
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        hung = set(SIGNALS) if hang is True else set(hang or ())
        if hung - set(SIGNALS):
            raise ValueError(f"unknown signals {sorted(hung - set(SIGNALS))}")
        self.received: dict[str, list[Any]] = {signal: [] for signal in SIGNALS}
        self.metadata_by_signal: dict[str, list[dict[str, str]]] = {s: [] for s in SIGNALS}
        #: Export calls per signal, answered or not (a hung one counts when it arrives).
        self.calls_by_signal: dict[str, int] = dict.fromkeys(SIGNALS, 0)
        self.requests = self.received["traces"]
        self.metadata = self.metadata_by_signal["traces"]
        self._lock = threading.Lock()
        self._released = threading.Event()
        receiver = self

        def export(signal: str, request: Any, context: Any, response: Any) -> Any:
            with receiver._lock:
                receiver.calls_by_signal[signal] += 1
            if signal in hung:
                receiver._released.wait()
                return response
            with receiver._lock:
                receiver.received[signal].append(request)
                receiver.metadata_by_signal[signal].append(dict(context.invocation_metadata()))
            return response

        class TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                response = trace_service_pb2.ExportTraceServiceResponse()
                return export("traces", request, context, response)

        class LogsService(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                response = logs_service_pb2.ExportLogsServiceResponse()
                return export("logs", request, context, response)

        class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                response = metrics_service_pb2.ExportMetricsServiceResponse()
                return export("metrics", request, context, response)

        # Enough workers that hung calls of one signal cannot starve the others.
        self.server = grpc.server(ThreadPoolExecutor(max_workers=12))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(LogsService(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsService(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    @property
    def calls(self) -> int:
        """Export calls of the trace service (as before the other signals were served)."""
        return self.calls_by_signal["traces"]

    def __enter__(self) -> OtlpReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._released.set()
        self.server.stop(grace=None)

    def spans(self) -> list[dict[str, Any]]:
        """Every span received so far, flattened, with its resource's ``service.name``."""
        out = []
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append(
                            {
                                "name": span.name,
                                "kind": KINDS.get(span.kind, str(span.kind)),
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex() or None,
                                "attributes": _attributes(span.attributes),
                                "status": span.status.code,
                                "events": [e.name for e in span.events],
                                "scope": scope_spans.scope.name,
                                "service": resource.get("service.name"),
                                "resource": resource,
                            }
                        )
        return out

    def log_records(self) -> list[dict[str, Any]]:
        """Every log record received so far, flattened, with its resource and scope."""
        out = []
        with self._lock:
            requests = list(self.received["logs"])
        for request in requests:
            for resource_logs in request.resource_logs:
                resource = _attributes(resource_logs.resource.attributes)
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        out.append(
                            {
                                "body": _value(record.body),
                                "severity_text": record.severity_text,
                                "severity_number": record.severity_number,
                                "time_unix_nano": record.time_unix_nano,
                                "observed_time_unix_nano": record.observed_time_unix_nano,
                                "trace_id": record.trace_id.hex() or None,
                                "span_id": record.span_id.hex() or None,
                                "attributes": _attributes(record.attributes),
                                "event_name": record.event_name,
                                "scope": scope_logs.scope.name,
                                "service": resource.get("service.name"),
                                "resource": resource,
                            }
                        )
        return out

    def metric_points(self) -> list[dict[str, Any]]:
        """Every metric data point received so far, flattened: the metric's ``name``,
        ``unit``, ``kind`` (``sum``, ``gauge``, ``histogram``, ``exponential_histogram``,
        ``summary``), the point's ``attributes``, its ``value`` (sums and gauges) or
        ``count``/``sum``/``bucket_counts``/``explicit_bounds`` (histograms), ``exemplars``
        (each with its ``trace_id``), and the resource."""
        out = []
        with self._lock:
            requests = list(self.received["metrics"])
        for request in requests:
            for resource_metrics in request.resource_metrics:
                resource = _attributes(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        kind = metric.WhichOneof("data")
                        data = getattr(metric, kind)
                        for point in data.data_points:
                            entry: dict[str, Any] = {
                                "name": metric.name,
                                "unit": metric.unit,
                                "description": metric.description,
                                "kind": kind,
                                "attributes": _attributes(point.attributes),
                                "time_unix_nano": point.time_unix_nano,
                                "scope": scope_metrics.scope.name,
                                "service": resource.get("service.name"),
                                "resource": resource,
                            }
                            if kind in ("sum", "histogram", "exponential_histogram"):
                                entry["temporality"] = data.aggregation_temporality
                            if kind == "sum":
                                entry["monotonic"] = data.is_monotonic
                            if kind in ("sum", "gauge"):
                                entry["value"] = getattr(point, point.WhichOneof("value"))
                            else:
                                entry["count"] = point.count
                                entry["sum"] = point.sum
                            if kind == "histogram":
                                entry["bucket_counts"] = list(point.bucket_counts)
                                entry["explicit_bounds"] = list(point.explicit_bounds)
                            if kind != "summary":
                                entry["exemplars"] = [
                                    {
                                        "trace_id": e.trace_id.hex() or None,
                                        "span_id": e.span_id.hex() or None,
                                        "value": getattr(e, e.WhichOneof("value") or "as_double"),
                                        "attributes": _attributes(e.filtered_attributes),
                                    }
                                    for e in point.exemplars
                                ]
                            out.append(entry)
        return out


class SentryReceiver:
    """An HTTP endpoint standing in for Sentry: ``dsn`` points at it; envelopes are kept."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self.server = LiveServer(self._app)
        self.dsn = f"http://publickey@127.0.0.1:{self.server.port}/42"

    def _app(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self._lock:
            self.bodies.append(body)
            self.paths.append(request.path)
        return Response('{"id":"0"}', content_type="application/json")(environ, start_response)

    def __enter__(self) -> SentryReceiver:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def items(self) -> list[tuple[dict[str, Any], Any]]:
        """Every (item header, payload) of every envelope received."""
        out = []
        with self._lock:
            bodies = list(self.bodies)
        for body in bodies:
            lines = body.split(b"\n")
            index = 1  # line 0: the envelope's own header
            while index < len(lines):
                if not lines[index].strip():
                    index += 1
                    continue
                header = json.loads(lines[index])
                payload = lines[index + 1] if index + 1 < len(lines) else b""
                try:
                    out.append((header, json.loads(payload)))
                except ValueError:
                    out.append((header, payload))
                index += 2
        return out

    def events(self) -> list[dict[str, Any]]:
        return [payload for header, payload in self.items() if header.get("type") == "event"]

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(self.bodies)


def refused_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def iter_trace(spans: list[dict[str, Any]], root: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``root`` and every span under it (by parent links), depth first."""
    children: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        if span["parent_span_id"]:
            children.setdefault(span["parent_span_id"], []).append(span)
    stack = [root]
    while stack:
        span = stack.pop()
        yield span
        stack.extend(children.get(span["span_id"], []))


@contextlib.contextmanager
def celery_worker(
    target: str,
    queue: str | None = None,
    *,
    pool: str = "prefork",
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    name: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker of the app ``target`` (``module:attribute``) in a subprocess,
    consuming ``queue`` (the app's default when ``None``); one child with the prefork pool.
    ``env`` defaults to this process's environment with the repository on ``PYTHONPATH``.
    Stopped with :func:`stop_process` on exit."""
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "celery", "-A", target, "worker", f"--pool={pool}"]
    if pool == "prefork":
        command.append("--concurrency=1")
    command += ["--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if queue is not None:
        command += ["-Q", queue]
    if name is not None:
        command += ["-n", name]
    worker = subprocess.Popen(
        command,
        cwd=cwd or root,
        env=env or dict(os.environ, PYTHONPATH=str(root), GRPC_VERBOSITY="ERROR"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield worker
    finally:
        stop_process(worker)


def stop_process(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM, then SIGKILL if it is still running after 20 s; the last of what it printed
    (reading while it stops, so a full pipe cannot keep it alive). Safe to call twice."""
    if proc.poll() is None:
        proc.terminate()
    try:
        output = proc.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        output = proc.communicate(timeout=5)[0]
    return (output or b"").decode(errors="replace")[-4000:]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of the test's own on a free loopback port, without persistence, for
    tests that kill, pause or restart it (the shared one on 6379 is never touched). A restart
    comes back on the same port, empty, as a Redis without persistence does.

    :param workdir: its working directory.
    """

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed (apt-get install -y redis-server)"
            if REQUIRE_SERVICES:
                pytest.fail(message + "; OBSERVE_REQUIRE_SERVICES is set", pytrace=False)
            pytest.skip(message)
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.ping():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: gone at once, connections reset, nothing saved."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel and never answered (hung)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.kill()

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: The repository root (the traced server's working directory and PYTHONPATH).
ROOT = Path(__file__).resolve().parent.parent


def server_env(**extra: str) -> dict[str, str]:
    """The environment of ``tests.apps.traced_server`` run as its own process."""
    return dict(os.environ, PYTHONPATH=str(ROOT), GRPC_VERBOSITY="ERROR", **extra)


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """``python -m tests.apps.traced_server`` (werkzeug on a free port) and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.apps.traced_server"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        pytest.fail(f"server did not start: {line}{proc.stdout.read()}")
    return proc, f"http://127.0.0.1:{line.split()[1]}"
