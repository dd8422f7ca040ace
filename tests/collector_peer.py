"""A real OpenTelemetry collector on loopback: Rotel (``pip install rotel``, a Rust OTLP
collector whose wheel carries the ``rotel-agent`` binary), receiving OTLP over gRPC and HTTP
on free ports and forwarding traces, logs and metrics over OTLP/gRPC to one endpoint (an
:class:`tests.peers.OtlpReceiver`).

:func:`rotel_binary` finds the binary and checks that it runs here; :func:`rotel_collector`
runs it for the length of a ``with`` block.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REQUIRE_SERVICES
from .peers import free_port


def rotel_binary() -> Path:
    """The ``rotel-agent`` of the installed ``rotel`` package, after checking it runs on this
    machine. Not installed: skip (fail when ``OBSERVE_REQUIRE_SERVICES`` is set; the ``test``
    extra installs it on Linux x86-64). Installed but unable to run here (another CPU, a glibc
    older than its wheel's 2.34): skip with the loader's reason."""
    try:
        import rotel
    except ImportError:
        message = 'rotel is not installed (pip install -e ".[test]" installs it on Linux x86-64)'
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    binary = Path(rotel.__file__).resolve().parent / "rotel-agent"
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30
        )
    except OSError as exc:  # exec format error: a binary for another machine
        pytest.skip(f"the rotel-agent binary cannot run on this machine: {exc}")
    if result.returncode != 0:
        pytest.skip(f"the rotel-agent binary cannot run on this machine: {result.stderr[-500:]}")
    return binary


@dataclass(frozen=True)
class Collector:
    """A running collector: where applications send (gRPC and HTTP), and its process."""

    grpc_endpoint: str
    http_endpoint: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")[-4000:]


@contextlib.contextmanager
def rotel_collector(forward_to: str, workdir: Path) -> Iterator[Collector]:
    """Rotel receiving OTLP on two free loopback ports and exporting every signal over
    OTLP/gRPC (uncompressed, batches of at most 100 ms) to ``forward_to``
    (``http://127.0.0.1:<port>``); stopped with SIGTERM on exit."""
    binary = rotel_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "rotel.out"
    grpc_port, http_port = free_port(), free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "start",
                f"--otlp-grpc-endpoint=127.0.0.1:{grpc_port}",
                f"--otlp-http-endpoint=127.0.0.1:{http_port}",
                "--exporter=otlp",
                f"--otlp-exporter-endpoint={forward_to}",
                "--otlp-exporter-protocol=grpc",
                "--otlp-exporter-compression=none",
                "--batch-timeout=100ms",
                f"--pid-file={workdir / 'rotel.pid'}",
                f"--log-file={workdir / 'rotel.log'}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    collector = Collector(
        f"http://127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", process, log
    )
    try:
        _wait_listening(grpc_port, process, log)
        yield collector
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"rotel exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise AssertionError(f"rotel did not listen on {port} within 20 s:\n{log.read_text()}")
