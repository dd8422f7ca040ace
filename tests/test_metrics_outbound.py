"""Metrics of outgoing calls: latency, status, error type, retries and rate limits per declared
host, through real HTTP servers; labels bounded whatever hosts are called."""

from __future__ import annotations

import random
import string
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask, jsonify
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from flask_observe import Observe
from flask_observe._clock import ManualClock
from flask_observe.health import DependencyCheck, HealthRunner, Status
from flask_observe.hooks import OutboundCall
from flask_observe.metrics import Metrics
from flask_observe.metrics.outbound import OTHER, HostWindow, OutboundMetrics, rate_limit

from .conftest import HungServer, LiveServer, refused_port


@pytest.fixture
def upstream() -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    """A real HTTP API whose next answers are scripted: ``plan["answers"]`` is a list of
    (status, headers) popped per request, then 200."""
    plan: dict[str, Any] = {"answers": [], "lock": threading.Lock()}
    api = Flask("upstream")

    @api.get("/v1/<path:rest>")
    def answer(rest: str) -> Any:
        with plan["lock"]:
            status, headers = plan["answers"].pop(0) if plan["answers"] else (200, {})
        response = jsonify(ok=status < 400)
        response.status_code = status
        response.headers.update(headers)
        return response

    with LiveServer(api) as server:
        yield server, plan


def caller(make_app: Callable[..., Flask], hosts: list[str], **config: Any) -> Flask:
    app = make_app("caller", log_stdout=False, metrics_outbound_hosts=hosts, **config)

    @app.get("/call")
    def call() -> Any:
        from flask import request

        session = requests.Session()
        if request.args.get("retries"):
            retry = Retry(total=3, status_forcelist=[503], backoff_factor=0, allowed_methods=None)
            session.mount("http://", HTTPAdapter(max_retries=retry))
        try:
            response = session.get(request.args["url"], timeout=float(request.args.get("t", 5)))
            return {"status": response.status_code}
        except requests.RequestException as exc:
            return {"error": type(exc).__name__}

    return app


def value(app: Flask, name: str, **labels: str) -> float | None:
    return Observe.handle(Metrics, app).registry.get_sample_value(name, labels)


def test_calls_are_timed_and_counted_by_host_method_and_status_class(
    make_app: Callable[..., Flask], upstream: tuple[LiveServer, dict[str, Any]]
) -> None:
    server, plan = upstream
    host = server.url.removeprefix("http://")
    app = caller(make_app, [host])
    plan["answers"] = [(200, {}), (404, {}), (500, {}), (429, {"Retry-After": "7"})]
    client = app.test_client()
    for _ in range(4):
        client.get("/call", query_string={"url": f"{server.url}/v1/users/nasa"})
    count = "http_client_request_duration_seconds_count"
    for status_class in ("2xx", "4xx", "5xx"):
        expected = 2.0 if status_class == "4xx" else 1.0
        assert value(app, count, host=host, method="GET", status_class=status_class) == expected
    assert value(app, "http_client_errors_total", host=host, error_type="4xx") == 1.0
    assert value(app, "http_client_errors_total", host=host, error_type="5xx") == 1.0
    assert value(app, "http_client_errors_total", host=host, error_type="429") == 1.0
    assert value(app, "http_client_rate_limit_reset_seconds", host=host) == 7.0
    assert value(app, "http_client_rate_limit_remaining", host=host) == 0.0


def test_rate_limit_headers_of_both_conventions() -> None:
    now = 1_800_000_000.0
    assert rate_limit({"RateLimit-Remaining": "42", "RateLimit-Reset": "30"}, now) == (42.0, 30.0)
    assert rate_limit({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": str(now + 90)}, now) == (
        3.0,
        90.0,
    )
    assert rate_limit({"RateLimit-Remaining": "10, 100;w=60"}, now) == (10.0, None)
    assert rate_limit({"Retry-After": "Thu, 15 Jan 2027 08:00:05 GMT"}, 1_800_000_000.0)[0] == 0.0
    assert rate_limit({"Retry-After": "soon"}, now) == (None, None)
    assert rate_limit({}, now) == (None, None)


@pytest.mark.realtime
def test_timeouts_refused_connections_and_tls_errors_have_their_types(
    make_app: Callable[..., Flask], upstream: tuple[LiveServer, dict[str, Any]]
) -> None:
    server, _ = upstream
    with HungServer() as hung, refused_port() as port:
        hosts = [f"127.0.0.1:{hung.port}", f"127.0.0.1:{port}", server.url.removeprefix("http://")]
        app = caller(make_app, hosts)
        client = app.test_client()
        client.get("/call", query_string={"url": f"http://127.0.0.1:{hung.port}/x", "t": 0.3})
        client.get("/call", query_string={"url": f"http://127.0.0.1:{port}/x"})
        client.get("/call", query_string={"url": server.url.replace("http:", "https:") + "/v1/x"})
    errors = "http_client_errors_total"
    assert value(app, errors, host=hosts[0], error_type="timeout") == 1.0
    assert value(app, errors, host=hosts[1], error_type="connection") == 1.0
    assert value(app, errors, host=hosts[2], error_type="tls") == 1.0
    count = "http_client_request_duration_seconds_count"
    assert value(app, count, host=hosts[0], method="GET", status_class="error") == 1.0


def test_urllib3_retries_are_counted(
    make_app: Callable[..., Flask], upstream: tuple[LiveServer, dict[str, Any]]
) -> None:
    """Two 503s retried inside one call (a session with urllib3's Retry), then a 200: one
    call in the histogram, two retries counted."""
    server, plan = upstream
    host = server.url.removeprefix("http://")
    app = caller(make_app, [host])
    plan["answers"] = [(503, {}), (503, {})]
    response = app.test_client().get(
        "/call", query_string={"url": f"{server.url}/v1/x", "retries": "1"}
    )
    assert response.json == {"status": 200}
    assert value(app, "http_client_retries_total", host=host) == 2.0
    assert (
        value(
            app,
            "http_client_request_duration_seconds_count",
            host=host,
            method="GET",
            status_class="2xx",
        )
        == 1.0
    )


def test_ten_thousand_random_hosts_are_one_other_series() -> None:
    """A scraper following links: 10,000 random hosts, random methods and statuses — the host
    label takes the declared patterns and ``other``, nothing else."""
    metrics = Metrics(buckets=(0.1, 1.0))
    outbound = OutboundMetrics(metrics, ["api.twitter.com", "*.instagram.com"])
    rng = random.Random(7)
    for _ in range(10_000):
        name = "".join(rng.choices(string.ascii_lowercase, k=12))
        host = rng.choice([f"{name}.com", f"{name}.instagram.com", "api.twitter.com"])
        method = rng.choice(
            ["GET", "POST", "PROPFIND", "".join(rng.choices(string.ascii_uppercase, k=5))]
        )
        status = rng.choice([200, 301, 404, 429, 503, None])
        outbound(OutboundCall(method, f"https://{host}/{name}", status, None, 0.05, {}, 0))
    hosts = {
        sample.labels["host"]
        for family in metrics.registry.collect()
        for sample in family.samples
        if "host" in sample.labels
    }
    assert hosts == {"api.twitter.com", "*.instagram.com", OTHER}
    series = [
        s
        for family in metrics.registry.collect()
        if family.name == "http_client_request_duration_seconds"
        for s in family.samples
        if s.name.endswith("_count")
    ]
    assert len(series) <= 3 * 8 * 6  # hosts x methods (7 + OTHER) x status classes
    assert len(outbound._entries) <= 4096  # the (host, answer) cache is bounded too


def test_a_dependency_check_warns_from_recent_calls_without_calling(
    make_app: Callable[..., Flask], upstream: tuple[LiveServer, dict[str, Any]]
) -> None:
    """10 real calls to a declared host, 3 failed (two 5xx, a timeout-free 503): over a 20 %
    error ratio the check warns; 4xx answers are the caller's mistakes, not counted; no call
    is made by the check itself."""
    server, plan = upstream
    host = server.url.removeprefix("http://")
    app = caller(make_app, [host], health_cache_ttl=0)
    Observe().add_health_check(DependencyCheck("platform", host=host), app=app)
    runner = Observe.handle(HealthRunner, app)
    plan["answers"] = [(404, {}), (404, {}), (500, {}), (503, {}), (502, {})]
    client = app.test_client()
    for _ in range(10):
        client.get("/call", query_string={"url": f"{server.url}/v1/x"})
    served = len(plan["answers"])
    result = next(r for r in runner.run().results if r.name == "platform")
    assert result.status is Status.WARN
    assert result.output == "30% of 10 calls failed"
    assert len(plan["answers"]) == served  # the check made no call


def test_a_hosts_window_forgets_calls_older_than_five_minutes() -> None:
    clock = ManualClock()
    outbound = OutboundMetrics(Metrics(buckets=(0.1,)), ["api.example.com"], clock=clock)
    for status in (500, 500, 200):
        outbound(OutboundCall("GET", "https://api.example.com/", status, None, 0.01, {}, 0))
    assert outbound.window("api.example.com").totals() == (3, 2, 0)
    clock.advance(200)
    outbound(OutboundCall("GET", "https://api.example.com/", 429, None, 0.01, {}, 0))
    assert outbound.window("api.example.com").totals() == (4, 2, 1)
    clock.advance(150)
    assert outbound.window("api.example.com").totals() == (1, 0, 1)


def test_an_outgoing_call_inside_a_span_carries_its_trace_id_as_an_exemplar(
    make_app: Callable[..., Flask], upstream: tuple[LiveServer, dict[str, Any]]
) -> None:
    """The call's duration bucket carries the current span's trace ID (OpenMetrics only); a
    call with no current span carries none."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    server, _ = upstream
    host = server.url.removeprefix("http://")
    app = caller(make_app, [host])
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    url = f"{server.url}/v1/users/nasa"
    try:
        with app.test_request_context(), tracer.start_as_current_span("scrape") as span:
            requests.get(url, timeout=5)
            seen = format(span.get_span_context().trace_id, "032x")
        assert trace.get_current_span() is trace.INVALID_SPAN
        with app.test_request_context():
            requests.get(url, timeout=5)  # no span: no exemplar
    finally:
        provider.shutdown()
    client = app.test_client()
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    lines = [
        line
        for line in om.get_data(as_text=True).splitlines()
        if line.startswith("http_client_request_duration_seconds_bucket")
        and f'host="{host}"' in line
        and " # " in line
    ]
    assert [line.split('trace_id="')[1][:32] for line in lines] == [seen]
    assert (
        value(
            app,
            "http_client_request_duration_seconds_count",
            host=host,
            method="GET",
            status_class="2xx",
        )
        == 2.0
    )
    assert "trace_id" not in client.get("/metrics").get_data(as_text=True)


def test_a_hosts_window_over_twenty_minutes_of_calls_matches_a_recount() -> None:
    """A call every 7 s for 20 minutes, every tenth failed and every 13th throttled: after each
    call, the window's totals over 60 s and 300 s are those recounted from the calls' times
    (a call counts while the end of its 10-second slice is inside the span asked)."""
    clock = ManualClock(start=1_800_000_000.0)
    clock.advance(12_345.6)  # the monotonic clock does not start on a slice's edge
    outbound = OutboundMetrics(Metrics(buckets=(0.1,)), ["api.example.com"], clock=clock)
    made: list[tuple[float, bool, bool]] = []
    for i in range(20 * 60 // 7):
        clock.advance(7)
        failed, throttled = i % 10 == 0, i % 13 == 0
        status = 503 if failed else 429 if throttled else 200
        outbound(OutboundCall("GET", "https://api.example.com/x", status, None, 0.01, {}, 0))
        made.append((clock.monotonic(), failed, throttled and not failed))
        for seconds in (60.0, 300.0):
            since = clock.monotonic() - seconds
            kept = [c for c in made if c[0] - c[0] % 10 + 10 > since]
            expected = (len(kept), sum(c[1] for c in kept), sum(c[2] for c in kept))
            assert outbound.window("api.example.com").totals(seconds) == expected, (i, seconds)


def test_rate_limit_gauges_follow_each_answer_and_the_time_for_unix_resets() -> None:
    """The same headers twice set the same figures; a reset given as a Unix time is
    recomputed at each answer (it depends on the time), and a new remaining count replaces
    the last."""
    clock = ManualClock(start=1_800_000_000.0)
    metrics = Metrics(buckets=(0.1,))
    outbound = OutboundMetrics(metrics, ["api.example.com"], clock=clock)

    def answer(headers: dict[str, str]) -> tuple[float | None, float | None]:
        store = requests.structures.CaseInsensitiveDict(headers)
        outbound(OutboundCall("GET", "https://api.example.com/x", 200, None, 0.01, store, 0))
        labels = {"host": "api.example.com"}
        return (
            metrics.registry.get_sample_value("http_client_rate_limit_remaining", labels),
            metrics.registry.get_sample_value("http_client_rate_limit_reset_seconds", labels),
        )

    assert answer({"RateLimit-Remaining": "99", "RateLimit-Reset": "30"}) == (99.0, 30.0)
    assert answer({"RateLimit-Remaining": "99", "RateLimit-Reset": "30"}) == (99.0, 30.0)
    assert answer({"ratelimit-remaining": "98", "RateLimit-Reset": "30"}) == (98.0, 30.0)
    unix = {"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": str(1_800_000_090)}
    assert answer(unix) == (5.0, 90.0)
    clock.advance(60)
    assert answer(unix) == (5.0, 30.0)
    assert answer({"Content-Type": "application/json"}) == (5.0, 30.0)  # no figures: kept
    # Fields seen before, after an answer whose figures depended on the time: set again.
    assert answer({"RateLimit-Remaining": "99", "RateLimit-Reset": "30"}) == (99.0, 30.0)
    assert answer({"Retry-After": "Fri, 15 Jan 2027 08:00:05 GMT"}) == (0.0, 0.0)  # 55 s ago
    assert answer({"RateLimit-Remaining": "99", "RateLimit-Reset": "30"}) == (99.0, 30.0)


def test_a_call_that_read_the_clock_before_a_slices_edge_loses_no_counts() -> None:
    """Two threads at a slice's edge: one reads the clock just before it, the other (after
    it) takes the lock first. The late call is counted in its own slice, and neither slice's
    earlier calls are wiped (as the deque of slices kept them before the ring)."""
    clock = ManualClock(start=1_800_000_000.0)
    clock.advance(100.0 - clock.monotonic() % 10.0 + 5.0)  # mid-slice
    window = HostWindow(clock)
    for _ in range(3):
        window.add(False, False)  # three calls in slice T
    clock.advance(4.999)

    class Preempted:
        """The late thread reads T's time; the other runs its whole add() in slice T+1."""

        def __init__(self) -> None:
            self.done = False

        def monotonic(self) -> float:
            now = clock.monotonic()
            if not self.done:
                self.done = True
                clock.advance(0.002)  # the other thread, past the edge
                window.add(True, False)
            return now

        def time(self) -> float:
            return clock.time()

    window._clock = Preempted()  # type: ignore[assignment]
    window.add(False, False)  # the late call: slice T, after slice T+1 began
    window._clock = clock
    window.add(False, True)  # slice T+1 again
    assert window.totals(60.0) == (6, 1, 1)


def test_a_call_with_an_answer_and_an_error_is_an_error_after_the_same_answer_without() -> None:
    """An answer cached for a host, method and status is not served to a call that has the
    same status and also an error (a body cut off): that one is ``error``, and counted."""
    metrics = Metrics(buckets=(0.1,))
    outbound = OutboundMetrics(metrics, ["api.example.com"])
    outbound(OutboundCall("GET", "https://api.example.com/x", 200, None, 0.01, {}, 0))
    cut = ConnectionError("connection reset while reading the body")
    outbound(OutboundCall("GET", "https://api.example.com/x", 200, cut, 0.01, {}, 0))
    count = "http_client_request_duration_seconds_count"
    labels = {"host": "api.example.com", "method": "GET"}
    get = metrics.registry.get_sample_value
    assert get(count, {**labels, "status_class": "2xx"}) == 1.0
    assert get(count, {**labels, "status_class": "error"}) == 1.0
    errors = {"host": "api.example.com", "error_type": "connection"}
    assert get("http_client_errors_total", errors) == 1.0


def test_under_gunicorn_a_workers_repeated_answer_is_the_most_recent_again(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Multiprocess mode, ``mostrecent`` gauges: worker A reads 5 left, worker B then 3, and A
    the same fields as before again. A sets its gauge again (its value is stamped), so the
    merged figure is A's 5, not B's older 3: the 'same fields, skip' shortcut is off there."""
    import time

    from prometheus_client import CollectorRegistry, values
    from prometheus_client.multiprocess import MultiProcessCollector
    from requests.structures import CaseInsensitiveDict

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    worker = ["a"]
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: worker[0]))
    outbound_a = OutboundMetrics(Metrics(buckets=(0.1,)), ["api.example.com"])
    outbound_b = OutboundMetrics(Metrics(buckets=(0.1,)), ["api.example.com"])

    def answer(outbound: OutboundMetrics, remaining: str) -> None:
        headers = CaseInsensitiveDict({"RateLimit-Remaining": remaining})
        outbound(OutboundCall("GET", "https://api.example.com/x", 200, None, 0.01, headers, 0))
        time.sleep(0.01)  # the next stamp is later

    answer(outbound_a, "5")
    worker[0] = "b"
    answer(outbound_b, "3")
    worker[0] = "a"
    answer(outbound_a, "5")
    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=str(tmp_path))
    labels = {"host": "api.example.com"}
    assert merged.get_sample_value("http_client_rate_limit_remaining", labels) == 5.0
