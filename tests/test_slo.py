"""Error budgets judged over a real window and only on enough requests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask, request

from flask_observe import Observe
from flask_observe._clock import ManualClock
from flask_observe.metrics import Metrics
from flask_observe.slo import ErrorBudgets

from .conftest import LiveServer, read_json_lines
from .test_metrics import ReadingClient

TOKEN = "slo-test-token-0123456789abcdef"


def served(metrics: Metrics, status: int, count: int, seconds: float = 0.01) -> None:
    """Record ``count`` requests as the RED metrics see them."""
    for _ in range(count):
        metrics.http.requests.labels("GET", "/x", str(status)).inc()
        metrics.http.duration.labels("GET", "/x").observe(seconds)


def test_a_fresh_process_with_one_500_in_two_requests_spends_no_budget(
    make_app: Callable[..., Flask],
) -> None:
    """The observed case: one 500 among two requests gave -499 and a warning. Now: not judged
    (None), the gauge reads 1 (untouched), /health says pass with the counts."""
    app = make_app("fresh", log_stdout=False, auth_token=TOKEN)
    app.test_client_class = ReadingClient  # reads each body, so the request is finished

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    @app.get("/boom")
    def boom() -> tuple[str, int]:
        return "no", 500

    client = app.test_client()
    client.get("/ok")
    client.get("/boom")
    budgets = Observe.handle(ErrorBudgets, app)
    assert budgets.update() == {"availability": None, "latency": None}
    registry = Observe.handle(Metrics, app).registry
    value = registry.get_sample_value("slo_error_budget_remaining_ratio", {"slo": "availability"})
    assert value == 1.0
    report = client.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).json
    entry = report["checks"]["slo-availability:errorBudgetRemaining"][0]
    assert entry["status"] == "pass"
    assert "observedValue" not in entry  # nothing to judge yet
    assert (entry["requestsInWindow"], entry["requestsNeeded"]) == (2, 1000)


def test_the_budget_needs_enough_requests_to_allow_one_bad_one() -> None:
    """99.9 %: judged from 1,000 requests (a budget of one bad request), 99 %: from 100 (the
    minimum); below, None."""
    metrics = Metrics(buckets=(0.1, 0.5, 1.0))
    budgets = ErrorBudgets(metrics, 0.999, 0.99, 0.5, 0.1, min_requests=100, clock=ManualClock())
    assert (budgets.needed("availability"), budgets.needed("latency")) == (1000, 100)
    served(metrics, 200, 99)
    assert budgets.update() == {"availability": None, "latency": None}
    served(metrics, 200, 1)
    assert budgets.update() == {"availability": None, "latency": 1.0}
    served(metrics, 500, 1)
    served(metrics, 200, 898)
    assert budgets.update()["availability"] is None  # 999 requests: not yet
    served(metrics, 200, 1)
    assert budgets.update()["availability"] == pytest.approx(1 - (1 / 1000) / 0.001)


def test_errors_older_than_the_window_no_longer_count() -> None:
    """A burst of 500s spends the budget; an hour of good requests later it is back to 1."""
    clock = ManualClock()
    metrics = Metrics(buckets=(0.5,))
    budgets = ErrorBudgets(metrics, 0.99, 0.0, 0.5, 0.1, window=3600, min_requests=100, clock=clock)
    served(metrics, 200, 190)
    served(metrics, 500, 10)
    assert budgets.update()["availability"] == pytest.approx(1 - (10 / 200) / 0.01)  # -4
    for _ in range(240):  # an hour, sampled every 15 s, 1 good request a sample
        clock.advance(15)
        served(metrics, 200, 1)
        budgets.update()
    assert budgets.requests_in_window == pytest.approx(240, abs=1)
    assert budgets.update()["availability"] == 1.0


@pytest.mark.realtime
def test_slow_uploads_and_downloads_do_not_spend_the_latency_budget(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """Clients that send their body at 2 bytes per 0.1 s, or read a 4 MiB answer slowly,
    through a real werkzeug server: the access line's duration_ms is what the client saw
    (over 1 s) with the wait on the client in client_wait_ms; the duration histogram, which
    the latency SLI reads, records what the server controls (under 0.5 s)."""
    app = make_app("slow", log_stdout=False, log_dir=str(tmp_path))

    @app.post("/upload")
    def upload() -> str:
        return str(len(request.get_data()))

    @app.get("/big")
    def big() -> bytes:
        return b"x" * (4 * 1024 * 1024)

    with LiveServer(app) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            body = b"a" * 24
            sock.sendall(
                b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            for i in range(0, len(body), 2):
                time.sleep(0.1)
                sock.sendall(body[i : i + 2])
            assert b"200 OK" in sock.recv(4096)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received = 0
            started = time.monotonic()
            while chunk := sock.recv(65536):
                received += len(chunk)
                if time.monotonic() - started < 1.2:
                    time.sleep(0.02)
            assert received > 4 * 1024 * 1024
    lines = [
        x for x in read_json_lines(tmp_path / "app.log") if x.get("route") in ("/upload", "/big")
    ]
    assert [x["route"] for x in lines] == ["/upload", "/big"]
    for line in lines:
        assert line["duration_ms"] > 1000, line
        assert line["client_wait_ms"] > 0.8 * line["duration_ms"], line
    registry = Observe.handle(Metrics, app).registry
    for route in ("/upload", "/big"):
        labels = {"method": "POST" if route == "/upload" else "GET", "route": route, "le": "0.5"}
        assert registry.get_sample_value("http_request_duration_seconds_bucket", labels) == 1.0
