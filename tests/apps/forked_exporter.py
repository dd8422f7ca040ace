"""A process that puts OTLP log lines, forks, and reports what its child exported.

``python -m tests.apps.forked_exporter os|libc`` builds a :class:`~flask_observe.otlp.logs.
LogsPipeline` with a recording exporter and a schedule delay of ten minutes, puts two lines
(the first through the SDK's emit, the next straight into its queue), then forks:

- ``os``: :func:`os.fork`, Python's fork hooks run (gunicorn ``--preload``);
- ``libc``: libc's ``fork()`` through ``ctypes`` with the GIL kept, so no ``os.register_at_fork``
  hook runs in the child (uWSGI forks its workers so by default).

The child puts one full batch and waits (at most 10 s) until its own exporter has it. One JSON
line on stdout says what the child exported (``{"child": [...]}``, or the error it met as
``{"error": ...}``; ``null`` if it died before saying anything) and how it ended
(``"status"``, from ``os.waitpid``); a child silent for 30 s is killed (its error says so).
Run as a process of its own: CPython does not support a fork without its hooks, and in the
test process, among the threads earlier tests left, the child sometimes died of SIGSEGV; here
only the pipeline's export thread runs beside the one that forks.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal
import sys
import time
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from flask_observe.otlp.logs import LogsPipeline


class Recorder(LogRecordExporter):
    """Keeps the body of every record it is given."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []

    def export(self, batch: Any) -> LogRecordExportResult:
        self.bodies.extend(r.log_record.body for r in batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def child_exports(pipeline: LogsPipeline, batch_size: int) -> list[Any]:
    """In the child: put a full batch and return what the child's own exporter got."""
    for n in range(batch_size):
        pipeline.put(time.time(), logging.INFO, "child", {"message": f"child {n}"})
    deadline = time.monotonic() + 10
    exporter = None
    while time.monotonic() < deadline:
        exporter = pipeline.local.built_here()
        if exporter is not None and len(exporter.bodies) >= batch_size:
            break
        time.sleep(0.01)
    return exporter.bodies if exporter is not None else []


def main(kind: str) -> None:
    os.environ["OTEL_BLRP_SCHEDULE_DELAY"] = "600000"
    pipeline = LogsPipeline(Resource.create({"service.name": f"forked-{kind}"}), Recorder)
    batch_size = pipeline._wake_at
    for n in range(2):
        pipeline.put(time.time(), logging.INFO, "parent", {"message": f"parent {n}"})
    assert pipeline._direct, "the second line did not go straight into the SDK's queue"
    read, write = os.pipe()
    sys.stdout.flush()
    pid = ctypes.PyDLL(None).fork() if kind == "libc" else os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            said: Any = {"child": child_exports(pipeline, batch_size)}
        except BaseException as exc:  # said to the parent, not lost with the child
            code, said = 1, {"error": repr(exc)}
        try:
            os.write(write, json.dumps(said).encode())
        finally:
            os._exit(code)
    os.close(write)
    said = read_within(read, pid, 30.0)
    status = os.waitpid(pid, 0)[1]
    pipeline.shutdown()
    print(json.dumps({"child": None, **(said or {}), "status": status, "batch_size": batch_size}))


def read_within(fd: int, pid: int, seconds: float) -> Any:
    """What the child said on ``fd`` (``None`` if nothing); a child still silent after
    ``seconds`` (hung: the hazard of a fork without Python's hooks) is killed and said to."""
    deadline = time.monotonic() + seconds
    data = b""
    with os.fdopen(fd, "rb") as pipe:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pipe], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                return {"error": f"the child hung for {seconds:.0f} s and was killed"}
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                return json.loads(data) if data else None
            data += chunk


if __name__ == "__main__":
    main(sys.argv[1])
