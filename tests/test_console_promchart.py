"""The overview's charts from a real Prometheus (``query_range``), and each way that fails
becoming one sentence within the deadline: refused, hung, not Prometheus, a refused query."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask, Response

from flask_observe import Observe
from flask_observe.console.promchart import PrometheusCharts, PrometheusError, queries

from .conftest import HungServer, LiveServer
from .peers import free_port
from .test_contrib import need_tool
from .test_prometheus_integration import Process, wait_until


def test_the_queries_are_scoped_by_the_selector() -> None:
    scoped = queries('job="scraper"', "2m")
    assert scoped["requests"] == 'sum(rate(http_requests_total{job="scraper"}[2m]))'
    assert scoped["errors"] == 'sum(rate(http_requests_total{job="scraper",status=~"5.."}[2m]))'
    assert 'http_request_duration_seconds_bucket{job="scraper"}[2m]' in scoped["p95"]
    assert queries("", "1m")["errors"] == 'sum(rate(http_requests_total{status=~"5.."}[1m]))'


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, threading.Event]]:
    """A real Prometheus scraping a Flask app (every 0.5 s) while traffic runs: one request in
    four fails."""
    binary = need_tool("prometheus")
    app = Flask("promchart")
    observe = Observe(app, log_stdout=False)

    @app.get("/work/<int:n>")
    def work(n: int) -> Response:
        return Response("no", status=500) if n % 4 == 0 else Response("ok")

    stop = threading.Event()
    with LiveServer(app) as server:

        def traffic() -> None:
            n = 0
            while not stop.is_set():
                with contextlib.suppress(requests.RequestException):
                    requests.get(f"{server.url}/work/{n}", timeout=5)
                n += 1
                stop.wait(0.02)

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 500ms, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: app\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
        )
        process = Process(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            tmp_path / "prometheus.log",
        )
        url = f"http://127.0.0.1:{port}"
        try:

            def ready() -> bool:
                try:
                    return requests.get(url + "/-/ready", timeout=2).status_code == 200
                except requests.RequestException:
                    return False

            wait_until(ready, 30, "prometheus to be ready")
            yield url, stop
        finally:
            stop.set()
            thread.join(10)
            process.stop()
    observe.shutdown(app)  # its process-wide logging handlers and patches go with it


@pytest.mark.realtime
def test_charts_read_a_real_prometheus(prometheus: tuple[str, threading.Event]) -> None:
    url, _ = prometheus
    charts = PrometheusCharts(url, 'job="app"', timeout=5.0)

    def has_rates() -> list[object] | None:
        points = charts.series(120, 15, now=time.time() + 15)
        filled = [p for p in points if p.requests > 0 and p.p95 is not None]
        return filled or None

    filled = wait_until(has_rates, 30, "rates in Prometheus")
    point = filled[-1]
    assert point.errors > 0
    assert point.errors / point.requests == pytest.approx(0.25, abs=0.1)
    assert 0 < point.p95 < 1.0
    # a selector matching nothing is a chart of zeros, not a failure
    empty = PrometheusCharts(url, 'job="nothing"').series(120, 15)
    assert len(empty) == 8
    assert all(p.requests == 0 and p.p95 is None for p in empty)


@pytest.mark.realtime
def test_a_refused_query_says_what_prometheus_said(prometheus: tuple[str, threading.Event]) -> None:
    url, _ = prometheus
    with pytest.raises(PrometheusError, match=r"answered 400.*parse error"):
        PrometheusCharts(url, "job=(").series(120, 15)


@pytest.mark.realtime  # deadlines on the wall clock
def test_unreachable_hung_and_foreign_servers_fail_within_the_deadline() -> None:
    with pytest.raises(PrometheusError, match="could not be reached"):
        PrometheusCharts(f"http://127.0.0.1:{free_port()}").series(3600, 60)
    with HungServer() as hung:
        started = time.monotonic()
        with pytest.raises(PrometheusError, match=r"did not answer within 0\.5 s"):
            PrometheusCharts(f"http://127.0.0.1:{hung.port}", timeout=0.5).series(3600, 60)
        assert time.monotonic() - started < 1.5
    page = Flask("not-prometheus")
    page.add_url_rule(
        "/api/v1/query_range", "q", lambda: Response("<html>hello</html>", mimetype="text/html")
    )
    with LiveServer(page) as server, pytest.raises(PrometheusError, match="as Prometheus does"):
        PrometheusCharts(server.url).series(3600, 60)
