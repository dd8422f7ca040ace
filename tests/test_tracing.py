"""Tracing: real spans exported over OTLP/gRPC to a real receiver on loopback.

Every test sends its spans to an :class:`~tests.peers.OtlpReceiver` (a ``grpcio`` server with
``opentelemetry-proto``'s ``TraceService``) and asserts on what the receiver got: names,
kinds, parent/child links, attributes, and the resource's service name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, redirect, request

from flask_observe import Observe
from flask_observe.state import current_state
from flask_observe.tracing.handle import TracingSetup

from .conftest import LiveServer, read_json_lines
from .peers import OtlpReceiver, iter_trace, wait_for


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
def make_app(receiver: OtlpReceiver, make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """conftest's factory, set up after the receiver: the apps are shut down while it still
    runs, so their last spans leave at once instead of retrying a stopped receiver."""
    return make_app


def flush(*apps: Flask) -> None:
    """Export what the apps' batch processors hold (the test does not wait for the timer)."""
    for app in apps:
        tracing = current_state(app).get(TracingSetup)
        assert tracing is not None
        tracing.provider.force_flush()  # type: ignore[attr-defined]


def traced_app(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, name: str = "traced", **config: Any
) -> Flask:
    settings: dict[str, Any] = {"log_stdout": False, "tracing_endpoint": receiver.endpoint}
    settings.update(config)
    return make_app(name, **settings)


def server_spans(spans: list[dict[str, Any]], service: str | None = None) -> list[dict[str, Any]]:
    return [
        s for s in spans if s["kind"] == "SERVER" and (service is None or s["service"] == service)
    ]


@pytest.mark.realtime
def test_server_span_carries_route_status_and_correlation_id(
    make_app: Callable[..., Flask], receiver: OtlpReceiver
) -> None:
    """One SERVER span per request, named after the route, with the correlation ID, status
    and the app's service name; the response is unchanged apart from its headers."""
    app = traced_app(make_app, receiver, service_name="orders", service_version="2.0.1")

    @app.get("/orders/<int:order_id>")
    def order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    response = app.test_client().get("/orders/7", headers={"X-Request-ID": "span-rid-1"})
    assert response.json == {"id": 7}
    flush(app)
    spans = wait_for(receiver.spans, 10)
    assert [s["name"] for s in spans] == ["GET /orders/<int:order_id>"]
    span = spans[0]
    assert span["kind"] == "SERVER"
    assert span["parent_span_id"] is None
    assert span["attributes"]["correlation_id"] == "span-rid-1"
    assert span["attributes"]["http.route"] == "/orders/<int:order_id>"
    assert span["attributes"]["http.response.status_code"] == 200
    assert span["service"] == "orders"
    assert span["resource"]["service.version"] == "2.0.1"


@pytest.mark.realtime
def test_log_lines_inside_a_span_carry_its_ids_and_the_access_line_too(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """A line logged in the view has the server span's trace_id and span_id; so does the
    access line, written after the span ended; lines outside any span have neither."""
    app = traced_app(make_app, receiver, log_dir=str(tmp_path))

    @app.get("/work")
    def work() -> str:
        app.logger.info("working")
        return "ok"

    app.logger.info("before any request")
    assert app.test_client().get("/work", headers={"X-Request-ID": "log-rid"}).data == b"ok"
    flush(app)
    span = wait_for(receiver.spans, 10)[0]
    lines = read_json_lines(tmp_path / "app.log")
    by_message = {x["message"]: x for x in lines}
    working, access = by_message["working"], by_message["GET /work 200"]
    for line in (working, access):
        assert (line["trace_id"], line["span_id"]) == (span["trace_id"], span["span_id"])
        assert line["correlation_id"] == "log-rid"
    assert "trace_id" not in by_message["before any request"]


def test_sample_rate_zero_records_nothing_and_logs_no_trace_ids(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """Unsampled requests export nothing, and their log lines point at no trace."""
    app = traced_app(make_app, receiver, tracing_sample_rate=0.0, log_dir=str(tmp_path))

    @app.get("/quiet")
    def quiet() -> str:
        app.logger.info("unsampled")
        return "ok"

    assert app.test_client().get("/quiet").status_code == 200
    flush(app)
    assert receiver.spans() == []
    assert all("trace_id" not in x for x in read_json_lines(tmp_path / "app.log"))


@pytest.mark.realtime
def test_excluded_paths_make_no_spans(
    make_app: Callable[..., Flask], receiver: OtlpReceiver
) -> None:
    """Health probes and /metrics (the shared OBSERVE_EXCLUDED_PATHS) are not traced, nor the
    queries they run; other paths are."""
    app = traced_app(make_app, receiver)

    @app.get("/health/live")
    def live() -> str:
        return "ok"

    @app.get("/metrics")
    def metrics() -> str:
        return "# nothing"

    @app.get("/api/thing")
    def thing() -> str:
        return "ok"

    client = app.test_client()
    for path in ("/health/live", "/metrics", "/api/thing", "/health/live"):
        assert client.get(path).status_code == 200
    flush(app)
    assert [s["name"] for s in wait_for(receiver.spans, 10)] == ["GET /api/thing"]


@pytest.mark.realtime
def test_traceresponse_header_when_asked(
    make_app: Callable[..., Flask], receiver: OtlpReceiver
) -> None:
    """OBSERVE_TRACING_RESPONSE_HEADER adds ``traceresponse: 00-<trace>-<span>-<flags>``
    naming the server span; without it there is no such header."""
    on = traced_app(make_app, receiver, "on", tracing_response_header=True)
    off = traced_app(make_app, receiver, "off")
    for app in (on, off):
        app.add_url_rule("/", "index", lambda: "ok")
    with_header = on.test_client().get("/")
    without = off.test_client().get("/")
    assert "traceresponse" not in without.headers
    flush(on, off)
    span = next(s for s in wait_for(receiver.spans, 10) if s["service"] == "on")
    version, trace_id, span_id, flags = with_header.headers["traceresponse"].split("-")
    assert (version, trace_id, span_id) == ("00", span["trace_id"], span["span_id"])
    assert int(flags, 16) & 1


@pytest.mark.realtime
def test_incoming_traceparent_is_continued(
    make_app: Callable[..., Flask], receiver: OtlpReceiver
) -> None:
    """A request carrying a W3C traceparent gets a server span in that trace, under it."""
    app = traced_app(make_app, receiver)
    app.add_url_rule("/", "index", lambda: "ok")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    app.test_client().get("/", headers={"traceparent": parent})
    flush(app)
    span = wait_for(receiver.spans, 10)[0]
    assert span["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert span["parent_span_id"] == "b7ad6b7169203331"


@pytest.mark.realtime
def test_a_server_span_with_an_unparsable_url_is_still_recorded(
    make_app: Callable[..., Flask], receiver: OtlpReceiver
) -> None:
    """The sampler's exclusion check reads the path from the span's attributes; a server span
    whose ``http.url`` cannot be parsed (another server instrumentation, a hand-made span) is
    recorded as any other instead of raising into the code that started it."""
    app = traced_app(make_app, receiver)
    tracing = current_state(app).get(TracingSetup)
    assert tracing is not None
    tracer = tracing.tracer(("hand.made", None, None))
    from opentelemetry.trace import SpanKind

    with app.app_context():
        tracer.start_span(
            "odd", kind=SpanKind.SERVER, attributes={"http.url": "http://[::1/health/live"}
        ).end()
    flush(app)
    assert [s["name"] for s in wait_for(receiver.spans, 10)] == ["odd"]


@pytest.mark.realtime
@pytest.mark.parametrize("when", ["before", "after", "globally"])
def test_no_duplicate_server_span_when_the_host_instruments_flask_too(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, when: str
) -> None:
    """The host calling FlaskInstrumentor.instrument_app itself, before or after Observe, or
    instrumenting every Flask app first (``FlaskInstrumentor().instrument()``, what
    ``opentelemetry-instrument`` does), still gives one SERVER span per request."""
    import flask
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    if when == "globally":
        FlaskInstrumentor().instrument()
        try:
            app = flask.Flask("twice")
        finally:
            FlaskInstrumentor().uninstrument()
    else:
        app = Flask("twice")
    if when == "before":
        FlaskInstrumentor.instrument_app(app)
    app.config.update(OBSERVE_LOG_STDOUT=False, OBSERVE_TRACING_ENDPOINT=receiver.endpoint)
    ext = Observe(app)
    try:
        if when == "after":
            FlaskInstrumentor.instrument_app(app)
        app.add_url_rule("/", "index", lambda: "ok")
        app.test_client().get("/")
        app.test_client().get("/")
        flush(app)
        spans = wait_for(lambda: len(receiver.spans()) >= 2 and receiver.spans(), 10)
        assert [s["kind"] for s in spans] == ["SERVER", "SERVER"]
        assert len({s["trace_id"] for s in spans}) == 2
    finally:
        ext.shutdown(app)
        if when != "globally":
            FlaskInstrumentor.uninstrument_app(app)


# -- outgoing calls: trace context to allowed hosts only -----------------------------------


def header_recorder(name: str) -> tuple[Flask, list[dict[str, str | None]]]:
    """A real HTTP service (no Observe) recording the trace headers of each call."""
    app = Flask(name)
    seen: list[dict[str, str | None]] = []

    @app.get("/echo")
    def echo() -> str:
        seen.append({h: request.headers.get(h) for h in ("traceparent", "tracestate", "baggage")})
        return "ok"

    @app.get("/bounce")
    def bounce() -> Any:
        seen.append({h: request.headers.get(h) for h in ("traceparent", "tracestate", "baggage")})
        return redirect(request.args["to"])

    return app, seen


@pytest.fixture
def two_hosts() -> Iterator[tuple[LiveServer, list[Any], LiveServer, list[Any]]]:
    allowed_app, allowed_seen = header_recorder("allowed")
    third_app, third_seen = header_recorder("third-party")
    with LiveServer(allowed_app) as allowed, LiveServer(third_app) as third:
        yield allowed, allowed_seen, third, third_seen


def calling_app(make_app: Callable[..., Flask], receiver: OtlpReceiver, allowed_port: int) -> Flask:
    app = traced_app(make_app, receiver, "caller", propagate_hosts=[f"127.0.0.1:{allowed_port}"])

    @app.get("/call")
    def call() -> str:
        from opentelemetry import baggage, context

        token = context.attach(baggage.set_baggage("user.tier", "gold"))
        try:
            requests.get(request.args["url"], timeout=5)
        finally:
            context.detach(token)
        return "done"

    return app


@pytest.mark.realtime
def test_allowed_host_continues_the_trace(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, two_hosts: tuple
) -> None:
    """A call to an allowlisted host carries traceparent (naming our CLIENT span) and
    baggage; the CLIENT span is a child of the SERVER span."""
    allowed, allowed_seen, _, _ = two_hosts
    app = calling_app(make_app, receiver, allowed.port)
    app.test_client().get("/call", query_string={"url": f"{allowed.url}/echo"})
    flush(app)
    spans = wait_for(lambda: len(receiver.spans()) >= 2 and receiver.spans(), 10)
    server = next(s for s in spans if s["kind"] == "SERVER")
    client = next(s for s in spans if s["kind"] == "CLIENT")
    assert client["parent_span_id"] == server["span_id"]
    assert client["name"] == "GET"
    assert len(allowed_seen) == 1
    version, trace_id, parent_id, flags = allowed_seen[0]["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", server["trace_id"], client["span_id"])
    assert int(flags, 16) & 1  # sampled
    assert allowed_seen[0]["baggage"] == "user.tier=gold"
    assert allowed_seen[0]["tracestate"] is None


@pytest.mark.realtime
def test_third_party_hosts_get_no_trace_headers(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, two_hosts: tuple
) -> None:
    """A host not on the allowlist (another port, the same machine under another name, or a
    redirect target of an allowed host) receives no traceparent, tracestate or baggage — while
    the call itself is still traced as a CLIENT span."""
    allowed, allowed_seen, third, third_seen = two_hosts
    app = calling_app(make_app, receiver, allowed.port)
    client = app.test_client()
    client.get("/call", query_string={"url": f"{third.url}/echo"})
    client.get("/call", query_string={"url": f"http://localhost:{allowed.port}/echo"})
    bounce = f"{allowed.url}/bounce?to={third.url}/echo"
    client.get("/call", query_string={"url": bounce})
    nothing = {"traceparent": None, "tracestate": None, "baggage": None}
    assert third_seen == [nothing, nothing]
    # The allowed host saw the bounce with the trace context, and localhost:port nothing.
    assert allowed_seen[0] == nothing
    assert allowed_seen[1]["traceparent"] is not None
    flush(app)
    spans = wait_for(lambda: len(receiver.spans()) >= 6 and receiver.spans(), 10)
    # Each call is still a CLIENT span (the redirect's second hop is part of its call's span).
    assert sorted(s["kind"] for s in spans) == ["CLIENT"] * 3 + ["SERVER"] * 3


def test_no_trace_headers_to_anyone_without_an_allowlist(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, two_hosts: tuple
) -> None:
    """With OBSERVE_PROPAGATE_HOSTS empty (the default), no host gets the trace context."""
    allowed, allowed_seen, _, _ = two_hosts
    app = traced_app(make_app, receiver)

    @app.get("/call")
    def call() -> str:
        requests.get(f"{allowed.url}/echo", timeout=5)
        return "done"

    app.test_client().get("/call")
    assert allowed_seen == [{"traceparent": None, "tracestate": None, "baggage": None}]


def test_calls_outside_any_app_context_follow_the_apps_allowlist(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, two_hosts: tuple
) -> None:
    """A thread with no app context but a trace going on (a Celery task's CONSUMER span, a
    background job): its calls get the allowlist of the running app — the allowed host
    continues the trace, the third-party host gets no trace header."""
    import threading

    from opentelemetry import trace

    allowed, allowed_seen, third, third_seen = two_hosts
    app = calling_app(make_app, receiver, allowed.port)
    tracing = current_state(app).get(TracingSetup)
    assert tracing is not None
    tracer = tracing.tracer(("background.job", None, None))
    job_ids: list[str] = []

    def job() -> None:
        with tracer.start_as_current_span("job", kind=trace.SpanKind.CONSUMER) as span:
            job_ids.append(f"{span.get_span_context().trace_id:032x}")
            requests.get(f"{third.url}/echo", timeout=5)
            requests.get(f"{allowed.url}/echo", timeout=5)

    worker = threading.Thread(target=job)
    worker.start()
    worker.join(10)
    assert third_seen == [{"traceparent": None, "tracestate": None, "baggage": None}]
    (seen,) = allowed_seen
    assert seen["traceparent"] is not None
    assert seen["traceparent"].split("-")[1] == job_ids[0]


def test_a_propagator_set_after_init_app_does_not_leak_its_headers(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, two_hosts: tuple
) -> None:
    """The host installs another propagator after ``init_app`` (B3, say, or its own): its
    headers reach the allowed host and are removed from calls to every other host, like
    traceparent."""
    from opentelemetry import propagate
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import get_current_span

    class HostPropagator(TextMapPropagator):
        """Writes the trace ID in a header of its own (as B3's X-B3-TraceId does)."""

        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
            return context

        def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
            trace_id = get_current_span(context).get_span_context().trace_id
            carrier["X-Host-Trace"] = f"{trace_id:032x}"

        @property
        def fields(self) -> set[str]:
            return {"X-Host-Trace"}

    allowed, _, third, _ = two_hosts
    seen: dict[str, str | None] = {}
    app = calling_app(make_app, receiver, allowed.port)
    original = propagate.get_global_textmap()
    propagate.set_global_textmap(CompositePropagator([original, HostPropagator()]))
    try:
        allowed.server.app.before_request(
            lambda: seen.__setitem__("allowed", request.headers.get("X-Host-Trace"))
        )
        third.server.app.before_request(
            lambda: seen.__setitem__("third", request.headers.get("X-Host-Trace"))
        )
        client = app.test_client()
        client.get("/call", query_string={"url": f"{allowed.url}/echo"})
        client.get("/call", query_string={"url": f"{third.url}/echo"})
    finally:
        propagate.set_global_textmap(original)
    assert seen["allowed"] is not None
    assert seen["third"] is None


@pytest.mark.realtime
@pytest.mark.services
def test_a_celery_task_gives_trace_headers_to_allowed_hosts_only(
    receiver: OtlpReceiver, two_hosts: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A task published in a request runs in a real prefork worker (Redis broker), where the
    Celery instrumentation makes the request's trace current without any app context: its
    call to the allowed host continues that trace; its call to a third-party host (and a
    redirect to one) carries no trace header."""
    import os
    import sys
    import time

    from .conftest import need_service
    from .peers import celery_worker, stop_process

    need_service("Redis", "127.0.0.1", 6379)
    allowed, allowed_seen, third, third_seen = two_hosts
    queue = f"flask-observe-trace-headers-{os.getpid()}-{int(time.time())}"
    settings = {
        "OBSERVE_TEST_BROKER": "redis://127.0.0.1:6379/12",
        "OBSERVE_TEST_QUEUE": queue,
        "FLASK_OBSERVE_TRACING_ENDPOINT": receiver.endpoint,
        "FLASK_OBSERVE_PROPAGATE_HOSTS": f"127.0.0.1:{allowed.port}",
        "FLASK_OBSERVE_LOG_DIR": str(tmp_path),
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("tests.apps.fetch_worker_app", None)
    # A fresh import (a fresh app, set up from this test's environment).
    module = importlib.import_module("tests.apps.fetch_worker_app")

    urls = [f"{third.url}/echo", f"{allowed.url}/bounce?to={third.url}/echo", f"{allowed.url}/echo"]
    with celery_worker("tests.apps.fetch_worker_app:celery", queue) as worker:
        try:
            response = module.app.test_client().post("/fetch", json={"urls": urls})
            assert response.status_code == 200
            trace_id = response.json["trace_id"]
            done = wait_for(lambda: len(third_seen) >= 2 and len(allowed_seen) >= 2, 60, 0.2)
            if not done:
                pytest.fail(f"the task did not call both hosts; worker:\n{stop_process(worker)}")
        finally:
            module.observe.shutdown(module.app)
    nothing = {"traceparent": None, "tracestate": None, "baggage": None}
    assert third_seen == [nothing, nothing]
    assert [seen["traceparent"].split("-")[1] for seen in allowed_seen] == [trace_id, trace_id]


# -- SQLAlchemy: every engine --------------------------------------------------------------


@pytest.mark.realtime
def test_sqlalchemy_engines_made_before_and_after_init_app_are_traced(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """Flask-SQLAlchemy set up before Observe (its engine exists already) and an engine
    created with create_engine after init_app: both engines' queries are CLIENT spans under
    the request's SERVER span."""
    import sqlalchemy as sa
    from flask_sqlalchemy import SQLAlchemy

    app = Flask("sql")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'fsa.db'}",
        OBSERVE_LOG_STDOUT=False,
        OBSERVE_TRACING_ENDPOINT=receiver.endpoint,
    )
    db = SQLAlchemy()
    db.init_app(app)
    ext = Observe(app)
    try:
        later = sa.create_engine(f"sqlite:///{tmp_path / 'later.db'}")

        @app.get("/q")
        def query() -> str:
            db.session.execute(sa.text("SELECT 1 AS from_flask_sqlalchemy")).all()
            with later.connect() as conn:
                conn.execute(sa.text("SELECT 2 AS from_later_engine")).all()
            return "ok"

        app.test_client().get("/q")
        flush(app)

        def statements() -> list[dict[str, Any]]:
            return [s for s in receiver.spans() if "db.query.text" in s["attributes"]]

        queries = wait_for(lambda: len(statements()) >= 2 and statements(), 10)
        spans = receiver.spans()
        server = server_spans(spans)[0]
        under = {s["span_id"] for s in iter_trace(spans, server)}
        texts = {s["attributes"]["db.query.text"] for s in queries}
        assert texts == {"SELECT 1 AS from_flask_sqlalchemy", "SELECT 2 AS from_later_engine"}
        for span in queries:
            assert span["kind"] == "CLIENT"
            assert span["span_id"] in under
            assert span["attributes"]["db.system.name"] == "sqlite"
    finally:
        ext.shutdown(app)


@pytest.mark.realtime
def test_root_client_spans_are_dropped_unless_asked(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """A query outside any request (start-up, a script) is not a trace of its own by
    default; OBSERVE_TRACING_ROOT_CLIENT_SPANS records it."""
    import sqlalchemy as sa

    quiet = traced_app(make_app, receiver, "quiet")
    loud = traced_app(make_app, receiver, "loud", tracing_root_client_spans=True)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    for app in (quiet, loud):
        with app.app_context(), engine.connect() as conn:
            conn.execute(sa.text(f"SELECT '{app.name}'")).all()
    flush(quiet, loud)
    services = {s["service"] for s in wait_for(receiver.spans, 10)}
    assert services == {"loud"}


# -- several apps in one process ------------------------------------------------------------


@pytest.mark.realtime
def test_host_tracer_follows_the_current_app_as_a_decorator_too(
    make_app: Callable[..., Flask], receiver: OtlpReceiver
) -> None:
    """``trace.get_tracer(...)`` in the host's code, taken after Observe installed its
    process-wide provider: a function decorated with ``start_as_current_span`` (decorated once,
    before any app context) records each call with the provider of the app current at the
    call, like the ``with`` form; outside any app context, the first app's."""
    from opentelemetry import trace

    first = traced_app(make_app, receiver, "first")
    second = traced_app(make_app, receiver, "second")
    tracer = trace.get_tracer("host.code")

    @tracer.start_as_current_span("decorated")
    def decorated() -> bool:
        return trace.get_current_span().is_recording()

    for app in (second, first):
        with app.app_context():
            assert decorated()
            with tracer.start_as_current_span("with-block"):
                pass
    assert decorated()
    flush(first, second)
    spans = wait_for(lambda: len(receiver.spans()) >= 5 and receiver.spans(), 10)
    by_service = sorted((s["service"], s["name"]) for s in spans)
    assert by_service == [
        ("first", "decorated"),
        ("first", "decorated"),
        ("first", "with-block"),
        ("second", "decorated"),
        ("second", "with-block"),
    ]


@pytest.mark.realtime
def test_shutting_one_app_down_leaves_the_others_traced_and_the_last_unpatches(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, two_hosts: tuple
) -> None:
    """Two traced apps share the ``requests`` and SQLAlchemy instrumentations: after
    Observe.shutdown of the first, the second's queries and calls are still its spans; after
    the second, ``requests`` is no longer instrumented and its adapter is the original."""
    import sqlalchemy as sa
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from requests.adapters import HTTPAdapter

    allowed, _, _, _ = two_hosts
    original_send = HTTPAdapter.send
    first = traced_app(make_app, receiver, "first")
    second = traced_app(make_app, receiver, "second")
    engine = sa.create_engine("sqlite://")

    @second.get("/work")
    def work() -> str:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 'second'")).all()
        requests.get(f"{allowed.url}/echo", timeout=5)
        return "ok"

    Observe().shutdown(first)
    second.test_client().get("/work")
    flush(second)
    spans = wait_for(lambda: len(receiver.spans()) >= 3 and receiver.spans(), 10)
    server = server_spans(spans)[0]
    assert server["service"] == "second"
    under = list(iter_trace(spans, server))
    assert {"SELECT", "GET"} <= {s["name"] for s in under}
    assert {s["service"] for s in spans} == {"second"}
    assert RequestsInstrumentor().is_instrumented_by_opentelemetry
    Observe().shutdown(second)
    assert not RequestsInstrumentor().is_instrumented_by_opentelemetry
    assert HTTPAdapter.send is original_send


# -- one trace across two services: the sample app ----------------------------------------


@pytest.mark.realtime
def test_sample_scrape_is_one_trace_across_scraper_db_and_platform(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """POST /api/scrapes on the sample scraper: the SERVER span, every SQL query and every
    call to the demo platform are in one trace, and each platform SERVER span (service
    demo-platform) is the child of the scraper's CLIENT span that called it."""
    from sample_app import DEMO_ACCOUNTS, create_app, observe
    from sample_app.platform import create_platform_app

    common = {
        "OBSERVE_LOG_DIR": str(tmp_path / "logs"),
        "OBSERVE_LOG_STDOUT": False,
        "OBSERVE_TRACING_ENDPOINT": receiver.endpoint,
    }
    platform_app = create_platform_app(**common)
    with LiveServer(platform_app) as platform:
        scraper = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'scraper.db'}",
                "SCRAPER_PLATFORM_URL": platform.url,
                **common,
            }
        )
        try:
            response = scraper.test_client().post(
                "/api/scrapes", json={}, headers={"X-Request-ID": "trace-scrape-1"}
            )
            assert response.status_code == 201
            flush(scraper, platform_app)

            def complete() -> list[dict[str, Any]] | None:
                spans = receiver.spans()
                done = len(server_spans(spans, "demo-platform")) >= len(DEMO_ACCOUNTS)
                return spans if done else None

            spans = wait_for(complete, 15)
            assert spans, f"platform spans missing: {receiver.spans()}"
        finally:
            observe.shutdown(scraper)
            Observe().shutdown(platform_app)

    root = next(
        s
        for s in server_spans(spans, "scraper")
        if s["attributes"].get("correlation_id") == "trace-scrape-1"
    )
    assert root["name"] == "POST /api/scrapes"
    assert root["parent_span_id"] is None
    trace = list(iter_trace(spans, root))
    assert {s["trace_id"] for s in trace} == {root["trace_id"]}
    assert [s for s in spans if s["trace_id"] == root["trace_id"]] == sorted(
        trace, key=lambda s: spans.index(s)
    ), "a span of this trace is not linked to its root"

    sql = [s for s in trace if s["attributes"].get("db.system.name") == "sqlite"]
    assert sql
    assert all(s["kind"] == "CLIENT" and s["service"] == "scraper" for s in sql)
    assert any("INSERT INTO snapshots" in s["attributes"].get("db.query.text", "") for s in sql)

    calls = [s for s in trace if s["kind"] == "CLIENT" and s["name"] == "GET"]
    assert len(calls) == len(DEMO_ACCOUNTS)
    # Each account's scrape is timed (flask_observe.timed): a span under the request's, the
    # platform call under it; the account the platform does not know is the one in error.
    scrapes = [s for s in trace if s["name"] == "scraper_scrape"]
    assert len(scrapes) == len(DEMO_ACCOUNTS)
    assert all(s["parent_span_id"] == root["span_id"] for s in scrapes)
    assert all(s["parent_span_id"] in {x["span_id"] for x in scrapes} for s in calls)
    assert sorted(s["status"] for s in scrapes) == [0] * (len(DEMO_ACCOUNTS) - 1) + [2]
    platform_servers = [s for s in trace if s["kind"] == "SERVER" and s is not root]
    assert len(platform_servers) == len(DEMO_ACCOUNTS)
    call_ids = {s["span_id"] for s in calls}
    for span in platform_servers:
        assert span["service"] == "demo-platform"
        assert span["name"] == "GET /v1/<platform>/users/<handle>"
        assert span["parent_span_id"] in call_ids
        assert span["attributes"]["correlation_id"] == "trace-scrape-1"
    statuses = sorted(s["attributes"]["http.response.status_code"] for s in platform_servers)
    assert statuses == [200] * (len(DEMO_ACCOUNTS) - 1) + [404]

    # The log lines of the request name the same trace.
    lines = [
        x
        for x in read_json_lines(tmp_path / "logs" / "app.log")
        if x.get("correlation_id") == "trace-scrape-1"
    ]
    assert {x["trace_id"] for x in lines} == {root["trace_id"]}


@pytest.mark.realtime
def test_sample_cli_scrape_is_a_trace_of_its_own(receiver: OtlpReceiver, tmp_path: Path) -> None:
    """``flask scrape`` (no request) starts a root span; its queries and platform calls are
    under it instead of being dropped as client spans without a parent."""
    from sample_app import create_app, observe
    from sample_app.platform import create_platform_app

    common = {"OBSERVE_LOG_STDOUT": False, "OBSERVE_TRACING_ENDPOINT": receiver.endpoint}
    platform_app = create_platform_app(**common)
    with LiveServer(platform_app) as platform:
        scraper = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'cli.db'}",
                "SCRAPER_PLATFORM_URL": platform.url,
                **common,
            }
        )
        try:
            result = scraper.test_cli_runner().invoke(args=["scrape", "--handle", "nasa"])
            assert result.exit_code == 0, result.output
            flush(scraper, platform_app)
            spans = wait_for(
                lambda: (
                    len(server_spans(receiver.spans(), "demo-platform")) >= 1 and receiver.spans()
                ),
                10,
            )
        finally:
            observe.shutdown(scraper)
            Observe().shutdown(platform_app)
    root = next(s for s in spans if s["name"] == "flask scrape")
    assert root["parent_span_id"] is None
    trace = list(iter_trace(spans, root))
    assert {(s["service"], s["kind"]) for s in trace} >= {
        ("scraper", "INTERNAL"),
        ("scraper", "CLIENT"),
        ("demo-platform", "SERVER"),
    }


@pytest.mark.realtime
@pytest.mark.parametrize("redact", [True, False])
def test_query_strings_and_client_address_stay_out_of_exported_spans(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, redact: bool
) -> None:
    """By default the server span (a real server: the target holds the query string) leaves
    with its path but without the query string, and without the client's address;
    OBSERVE_TRACING_REDACT=False exports them as recorded."""
    app = traced_app(make_app, receiver, tracing_redact=redact)
    app.add_url_rule("/search", "search", lambda: "ok")
    with LiveServer(app) as server:
        response = requests.get(f"{server.url}/search?token=QUERYSECRET42", timeout=5)
        assert response.text == "ok"
    flush(app)
    (span,) = wait_for(receiver.spans, 10)
    attributes = span["attributes"]
    assert ("QUERYSECRET42" in repr(attributes)) is not redact
    assert ("client.address" in attributes) is not redact
    assert ("url.query" in attributes) is not redact
    assert attributes["url.path"] == "/search"
    # The Host header's port is server.port, not part of server.address.
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == server.port
    assert attributes["http.route"] == "/search"


@pytest.mark.realtime
def test_outgoing_call_urls_leave_without_their_query_string(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, two_hosts: tuple
) -> None:
    """The CLIENT span of a ``requests`` call keeps its URL's path and loses the query string
    (an API key in a scraped URL, say); a URL without one is exported as recorded."""
    allowed, _, _, _ = two_hosts
    app = traced_app(make_app, receiver)

    @app.get("/call")
    def call() -> str:
        requests.get(f"{allowed.url}/echo?api_key=URLSECRET77", timeout=5)
        requests.get(f"{allowed.url}/echo", timeout=5)
        return "done"

    app.test_client().get("/call")
    flush(app)
    spans = wait_for(lambda: len(receiver.spans()) >= 3 and receiver.spans(), 10)
    urls = [s["attributes"]["url.full"] for s in spans if s["kind"] == "CLIENT"]
    assert urls == [f"{allowed.url}/echo", f"{allowed.url}/echo"]
    assert "URLSECRET77" not in repr(spans)


def test_redaction_copies_a_span_only_when_something_is_removed() -> None:
    """On the export thread each span is checked; one with nothing to remove (a client URL
    without a query string, a database span) is passed on as it is, not copied."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanKind

    from flask_observe.tracing.redact import redact_span

    plain = ReadableSpan("GET", kind=SpanKind.CLIENT, attributes={"http.url": "http://a/x"})
    query = ReadableSpan("GET", kind=SpanKind.CLIENT, attributes={"http.url": "http://a/x?k=1"})
    server = ReadableSpan(
        "GET /x",
        kind=SpanKind.SERVER,
        attributes={"http.target": "/x", "net.peer.ip": "10.1.2.3", "http.route": "/x"},
    )
    assert redact_span(plain) is plain
    assert dict(redact_span(query).attributes) == {"http.url": "http://a/x"}
    assert dict(redact_span(server).attributes) == {"http.target": "/x", "http.route": "/x"}

    class OtherSpan(ReadableSpan):
        """A span class of another make: copied through the public constructor."""

    other = OtherSpan("GET", kind=SpanKind.SERVER, attributes={"net.peer.ip": "10.1.2.3"})
    assert dict(redact_span(other).attributes) == {}


def test_attribute_redaction_copies_only_when_something_is_removed() -> None:
    """The console's span store redacts a span's attributes the same way: a mapping with
    nothing to remove is returned as it is, one with something is a copy without it."""
    from flask_observe.tracing.redact import redact_attributes

    plain = {"url.full": "http://a/x", "http.request.method": "GET"}
    assert redact_attributes(plain, server=False) is plain
    client = {"url.full": "http://a/x?token=s3cret", "client.address": "10.1.2.3"}
    assert redact_attributes(client, server=False) == {
        "url.full": "http://a/x",
        "client.address": "10.1.2.3",  # a client span's peer is no one's private address
    }
    assert client["url.full"] == "http://a/x?token=s3cret"  # the span's own is left alone
    server = {"url.path": "/x", "url.query": "q=1", "client.address": "10.1.2.3"}
    assert redact_attributes(server, server=True) == {"url.path": "/x"}


def test_redaction_of_an_sdk_span_leaves_the_original_as_it_was() -> None:
    """A span as the SDK hands it to processors (attributes bounded, shared with every other
    processor of the provider): the exported copy loses the private attributes and keeps the
    rest of the span; the original still has them all."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from flask_observe.tracing.redact import redact_span

    recorded = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    attributes = {"http.target": "/x?token=T0K3N", "net.peer.ip": "10.1.2.3", "http.route": "/x"}
    with provider.get_tracer("t").start_as_current_span(
        "GET /x", kind=SpanKind.SERVER, attributes=attributes
    ) as span:
        span.add_event("something")
    (original,) = recorded.get_finished_spans()
    redacted = redact_span(original)
    assert dict(redacted.attributes) == {"http.target": "/x", "http.route": "/x"}
    assert dict(original.attributes) == attributes
    for name in ("name", "context", "parent", "kind", "status", "start_time", "end_time"):
        assert getattr(redacted, name) == getattr(original, name)
    assert [e.name for e in redacted.events] == ["something"]
    assert redacted.resource is original.resource


# -- OpenTelemetry's own variables, and a host that set up OpenTelemetry itself -----------


@pytest.mark.realtime
def test_otel_environment_variables_are_honoured(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With only OTEL_* variables (no OBSERVE_TRACING_* key): tracing turns itself on for
    OTEL_EXPORTER_OTLP_ENDPOINT, exports there, names the service from OTEL_SERVICE_NAME and
    adds OTEL_RESOURCE_ATTRIBUTES; an explicit OBSERVE_SERVICE_NAME wins over the variable."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=scrapers")
    plain = make_app("plain", log_stdout=False)
    named = make_app("named", log_stdout=False, service_name="from-config")
    for app in (plain, named):
        app.add_url_rule("/", "index", lambda: "ok")
        app.test_client().get("/")
    flush(plain, named)
    spans = wait_for(lambda: len(receiver.spans()) >= 2 and receiver.spans(), 10)
    assert sorted(s["service"] for s in spans) == ["from-config", "from-env"]
    assert {s["resource"]["team"] for s in spans} == {"scrapers"}


@pytest.mark.realtime
def test_otel_traces_sampler_is_honoured_unless_a_rate_is_configured(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_TRACES_SAMPLER=always_off records nothing; OBSERVE_TRACING_SAMPLE_RATE=1 on
    another app overrides it."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    off = traced_app(make_app, receiver, "off")
    on = traced_app(make_app, receiver, "on", tracing_sample_rate=1.0)
    for app in (off, on):
        app.add_url_rule("/", "index", lambda: "ok")
        app.test_client().get("/")
    flush(off, on)
    assert [s["service"] for s in wait_for(receiver.spans, 10)] == ["on"]


@pytest.mark.parametrize(
    ("exporter", "endpoint", "environ", "chosen"),
    [
        (None, None, {}, "none"),
        (None, "http://c:4317", {}, "otlp-grpc"),
        (None, None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "otlp-grpc"),
        (None, None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318"}, "otlp-grpc"),
        (
            None,
            None,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            "otlp-http",
        ),
        ("console", None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "console"),
        ("none", "http://c:4317", {}, "none"),
        (None, "http://c:4317", {"OTEL_TRACES_EXPORTER": "none"}, "none"),
        (None, None, {"OTEL_TRACES_EXPORTER": "console"}, "console"),
        (None, None, {"OTEL_TRACES_EXPORTER": "otlp"}, "none"),
        (None, "http://c:4317", {"OTEL_TRACES_EXPORTER": "otlp"}, "otlp-grpc"),
        ("otlp-grpc", None, {"OTEL_TRACES_EXPORTER": "none"}, "otlp-grpc"),
    ],
)
def test_exporter_choice(
    exporter: str | None, endpoint: str | None, environ: dict[str, str], chosen: str
) -> None:
    """The configured exporter wins; then OTEL_TRACES_EXPORTER when it says none or console;
    else OTLP (gRPC, or HTTP by the protocol variable) when an endpoint is known, from config
    or environment; else none."""
    from flask_observe.tracing import choose_exporter

    assert choose_exporter(exporter, endpoint, environ) == chosen


@pytest.mark.realtime
def test_a_provider_installed_by_the_host_is_used_not_replaced() -> None:
    """The host set its own TracerProvider first (in a process of its own: the global provider
    can be set once): flask_observe records the server span — with the correlation ID — and
    the client span with it, and leaves it global."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "tests.apps.host_provider_app"],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=str(root)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same_provider"] is True
    assert result["global_is_host"] is True
    spans = {(s["kind"], s["service"]) for s in result["spans"]}
    assert spans == {("SERVER", "host-named"), ("CLIENT", "host-named")}
    server = next(s for s in result["spans"] if s["kind"] == "SERVER")
    assert server["correlation_id"] == "host-rid"


@pytest.mark.realtime
def test_otlp_http_exporter_posts_protobuf_to_v1_traces(make_app: Callable[..., Flask]) -> None:
    """OBSERVE_TRACING_EXPORTER=otlp-http with a base endpoint: spans arrive as an OTLP
    protobuf POST on <endpoint>/v1/traces of a real HTTP server."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[tuple[str, Any]] = []
    collector = Flask("otlp-http-collector")

    @collector.post("/v1/traces")
    def traces() -> tuple[bytes, int, dict[str, str]]:
        message = ExportTraceServiceRequest()
        message.ParseFromString(request.get_data())
        received.append((request.content_type or "", message))
        return b"", 200, {"Content-Type": "application/x-protobuf"}

    with LiveServer(collector) as server:
        app = make_app(
            "http-exported",
            log_stdout=False,
            tracing_exporter="otlp-http",
            tracing_endpoint=server.url,
        )
        app.add_url_rule("/", "index", lambda: "ok")
        app.test_client().get("/")
        flush(app)
        assert wait_for(lambda: received, 10)
    content_type, message = received[0]
    assert content_type == "application/x-protobuf"
    (resource_spans,) = message.resource_spans
    names = [s.name for ss in resource_spans.scope_spans for s in ss.spans]
    assert names == ["GET /"]


def test_console_exporter_writes_spans_to_stderr(
    make_app: Callable[..., Flask], capfd: pytest.CaptureFixture[str]
) -> None:
    """The development exporter prints spans as JSON on stderr, leaving stdout to the logs."""
    app = make_app("console-traced", tracing_exporter="console")
    app.add_url_rule("/", "index", lambda: "ok")
    app.test_client().get("/").get_data()
    flush(app)
    out, err = capfd.readouterr()
    assert '"name": "GET /"' in err
    assert '"name": "GET /"' not in out
