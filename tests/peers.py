"""Real peers on loopback for the tracing and error-reporting tests.

- :class:`OtlpReceiver`: an OTLP/gRPC trace receiver — a ``grpcio`` server with the
  ``TraceService`` of ``opentelemetry-proto`` — recording every export request.
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
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from .conftest import LiveServer

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


class OtlpReceiver:
    """An OTLP/gRPC collector stand-in on ``127.0.0.1:<port>`` that records what it gets.

    :param hang: accept each export call and never answer it (until stopped): a collector
        that is up at the gRPC level but stuck.
    """

    def __init__(self, hang: bool = False) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        self.requests: list[Any] = []
        self.metadata: list[dict[str, str]] = []
        self.calls = 0
        self._lock = threading.Lock()
        self._released = threading.Event()
        receiver = self

        class TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                with receiver._lock:
                    receiver.calls += 1
                if hang:
                    receiver._released.wait()
                    return trace_service_pb2.ExportTraceServiceResponse()
                with receiver._lock:
                    receiver.requests.append(request)
                    receiver.metadata.append(dict(context.invocation_metadata()))
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

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
    """A real redis-server of the test's own, on a free port: :meth:`stop` kills it,
    :meth:`start` brings it back on the same port (empty: nothing is saved)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self._directory)]
        self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock,
            ):
                sock.sendall(b"PING\r\n")
                return sock.recv(7) == b"+PONG\r\n"
            return False

        if not wait_for(answers, 10):
            raise RuntimeError(f"redis-server did not start on port {self.port}")
        return self

    def stop(self) -> None:
        """Kill the server (SIGKILL: as a crash would) and wait until the port is closed."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
