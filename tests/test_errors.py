"""Error reporting: real Sentry envelopes captured by a real HTTP endpoint used as the DSN."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from flask_observe import Observe
from flask_observe.errors.reporter import ErrorReporter
from flask_observe.state import current_state
from flask_observe.tracing.handle import TracingSetup

from .canaries import CANARIES, canary_request, leaked
from .conftest import HungServer, read_json_lines
from .peers import (
    OtlpReceiver,
    SentryReceiver,
    celery_worker,
    refused_port,
    stop_process,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sentry() -> Iterator[SentryReceiver]:
    with SentryReceiver() as running:
        yield running


def flush(app: Flask) -> None:
    errors = current_state(app).get(ErrorReporter)
    assert errors is not None
    assert errors.client is not None
    errors.client.flush(timeout=5)


def failing_app(make_app: Callable[..., Flask], dsn: str, **config: Any) -> Flask:
    settings: dict[str, Any] = {"log_stdout": False, "sentry_dsn": dsn}
    settings.update(config)
    app = make_app("shop", **settings)

    @app.post("/orders/<int:order_id>/pay")
    def pay(order_id: int) -> str:
        body = request.get_json(silent=True) or {}
        secret_local = CANARIES["local"]
        raise RuntimeError(f"payment failed for order {order_id} ({len(body) + len(secret_local)})")

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    return app


@pytest.mark.realtime
def test_view_error_reaches_sentry_with_correlation_and_trace_ids(
    make_app: Callable[..., Flask], sentry: SentryReceiver, tmp_path: Path
) -> None:
    """An unhandled exception in a view: one event, tagged with the request's correlation ID
    and the server span's trace and span IDs (also Sentry's own ``trace`` context), named
    after the route; the log line of the error carries the same IDs."""
    with OtlpReceiver() as otlp:
        app = failing_app(
            make_app,
            sentry.dsn,
            tracing_endpoint=otlp.endpoint,
            log_dir=str(tmp_path),
            service_version="3.1.0",
            environment="staging",
        )
        response = app.test_client().post("/orders/12/pay", headers={"X-Request-ID": "err-rid"})
        assert response.status_code == 500
        assert response.headers["X-Request-ID"] == "err-rid"
        flush(app)
        current_state(app).get(TracingSetup).provider.force_flush()  # type: ignore[union-attr]
        server = wait_for(otlp.spans, 10)[0]
    events = wait_for(sentry.events, 10)
    assert len(events) == 1
    event = events[0]
    assert event["tags"]["correlation_id"] == "err-rid"
    assert event["tags"]["trace_id"] == server["trace_id"]
    assert event["tags"]["span_id"] == server["span_id"]
    assert event["tags"]["service"] == "shop"
    assert event["contexts"]["trace"]["trace_id"] == server["trace_id"]
    assert event["contexts"]["trace"]["span_id"] == server["span_id"]
    assert event["transaction"] == "/orders/<int:order_id>/pay"
    assert event["request"] == {"method": "POST", "url": "http://localhost/orders/12/pay"}
    assert event["environment"] == "staging"
    assert event["release"] == "shop@3.1.0"
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["mechanism"] == {"type": "flask", "handled": False}
    # The server span recorded the error too, and the log line names the same trace.
    assert "exception" in server["events"]
    error_line = next(
        x for x in read_json_lines(tmp_path / "app.log") if x.get("exc_type") == "RuntimeError"
    )
    assert error_line["correlation_id"] == "err-rid"
    assert error_line["trace_id"] == server["trace_id"]


@pytest.mark.realtime
def test_without_tracing_events_still_carry_the_correlation_id(
    make_app: Callable[..., Flask], sentry: SentryReceiver
) -> None:
    """Sentry alone (no tracing): the correlation ID tag is there; no trace IDs are made up."""
    app = failing_app(make_app, sentry.dsn)
    app.test_client().post("/orders/1/pay", headers={"X-Request-ID": "alone-rid"})
    flush(app)
    (event,) = wait_for(sentry.events, 10)
    assert event["tags"]["correlation_id"] == "alone-rid"
    assert "trace_id" not in event["tags"]


@pytest.mark.realtime
def test_privacy_canaries_never_reach_sentry(
    make_app: Callable[..., Flask], sentry: SentryReceiver
) -> None:
    """Secrets planted in a cookie, the Authorization, X-Api-Key and a custom header, the
    query string, the JSON body, the client address and a local variable of the failing view:
    none is in what was sent, while the event itself arrived."""
    app = failing_app(make_app, sentry.dsn)
    response = canary_request(app.test_client(), "/orders/5/pay", rid="canary-rid")
    assert response.status_code == 500
    flush(app)
    events = wait_for(sentry.events, 10)
    assert [e["tags"]["correlation_id"] for e in events] == ["canary-rid"]
    assert leaked(sentry.raw()) == []
    assert "token=" not in sentry.raw().decode()


@pytest.mark.realtime
def test_client_ip_is_sent_only_when_configured(
    make_app: Callable[..., Flask], sentry: SentryReceiver
) -> None:
    """OBSERVE_SENTRY_SEND_CLIENT_IP puts the address in the event's user — and shows the
    canary check would catch it; every other canary still stays home."""
    app = failing_app(make_app, sentry.dsn, sentry_send_client_ip=True)
    canary_request(app.test_client(), "/orders/5/pay", rid="ip-rid")
    flush(app)
    (event,) = wait_for(sentry.events, 10)
    assert event["user"] == {"ip_address": CANARIES["client_ip"]}
    assert leaked(sentry.raw()) == ["client_ip"]


@pytest.mark.realtime
def test_the_stock_flask_integration_leaks_the_canaries(sentry: SentryReceiver) -> None:
    """Control: sentry_sdk.init with FlaskIntegration (send_default_pii off) in a process of
    its own sends the query string, the JSON body and the local variable — the canaries and
    the check above do detect a leak."""
    output = run_peer("leaky", sentry.dsn)
    assert output == {"status": 500}
    found = leaked(wait_for(lambda: sentry.events() and sentry.raw(), 10))
    assert {"query", "json_body", "local"} <= set(found), found


def test_host_initialised_sentry_stays_in_charge_and_gets_the_ids(
    sentry: SentryReceiver,
) -> None:
    """A host that called sentry_sdk.init itself (no DSN given to flask_observe) keeps its
    client and integrations — one event, from its Flask integration, none added by us (the
    peer flushed before exiting: everything sent has arrived) — and flask_observe adds the
    correlation ID to it."""
    assert run_peer("host", sentry.dsn) == {"status": 500}
    events = sentry.events()
    assert [e["exception"]["values"][0]["mechanism"]["type"] for e in events] == ["flask"]
    assert events[0]["tags"]["correlation_id"] == "peer-rid-1"


def test_errors_captured_by_hand_go_to_the_hosts_own_sentry(sentry: SentryReceiver) -> None:
    """With the host's own sentry_sdk.init, flask_observe.capture_exception hands the handled
    error to the host's client, with its tags and the request's correlation ID; the view's
    unhandled error is still reported once, by the host's Flask integration."""
    assert run_peer("host-manual", sentry.dsn) == {"status": 500}
    events = sentry.events()
    kinds = [e["exception"]["values"][0]["type"] for e in events]
    assert kinds == ["LookupError", "RuntimeError"]
    handled = events[0]
    assert handled["tags"]["step"] == "lookup"
    assert handled["tags"]["correlation_id"] == "peer-rid-1"
    assert events[1]["exception"]["values"][0]["mechanism"]["type"] == "flask"


def test_an_old_sentry_sdk_imported_by_the_host_does_not_break_init_app(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """sentry-sdk 1.x (no ``get_client``) imported by the host, no DSN given: init_app
    goes on with error reporting off instead of failing on the missing function."""
    import types

    monkeypatch.setitem(sys.modules, "sentry_sdk", types.ModuleType("sentry_sdk"))
    app = make_app("old-sentry", log_stdout=False)
    assert current_state(app).get(ErrorReporter) is None


def run_peer(mode: str, dsn: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.apps.sentry_peer_app", mode, dsn],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.realtime
def test_successful_requests_send_nothing_and_patch_nothing(
    make_app: Callable[..., Flask], sentry: SentryReceiver
) -> None:
    """Errors only: 20 successful requests send no envelope (no transaction, no session);
    no Sentry integration is installed and the process-wide Sentry client stays unset."""
    import sentry_sdk
    from sentry_sdk.integrations import _installed_integrations

    app = failing_app(make_app, sentry.dsn)
    client = app.test_client()
    for _ in range(20):
        assert client.get("/ok").status_code == 200
    flush(app)
    assert sentry.bodies == []
    assert not sentry_sdk.get_client().is_active()
    assert "flask" not in _installed_integrations
    client.post("/orders/1/pay")
    flush(app)
    assert [header["type"] for header, _ in wait_for(sentry.items, 10)] == ["event"]


def test_sentry_dsn_is_hidden_in_config_output(
    make_app: Callable[..., Flask], sentry: SentryReceiver
) -> None:
    """``flask observe config`` shows the DSN as <set>."""
    app = failing_app(make_app, sentry.dsn)
    result = app.test_cli_runner().invoke(args=["observe", "config"])
    assert '"OBSERVE_SENTRY_DSN": "<set>"' in result.output
    assert "publickey" not in result.output


@pytest.mark.realtime
@pytest.mark.parametrize("fault", ["refused", "hung"])
def test_sentry_down_or_hung_never_fails_the_host_and_shutdown_is_bounded(
    make_app: Callable[..., Flask], fault: str
) -> None:
    """With the DSN pointing at a refused port or at a server that accepts and never
    answers: successful requests all answer 200, failing ones their own 500 (no other
    error), and Observe.shutdown returns within ~2.5 s with events still queued."""
    with HungServer() as hung:
        port = hung.port if fault == "hung" else refused_port()
        app = failing_app(make_app, f"http://key@127.0.0.1:{port}/1", sentry_shutdown_timeout=2.0)
        client = app.test_client()
        statuses = []
        for i in range(40):
            if i % 4 == 0:
                statuses.append(client.post(f"/orders/{i}/pay").status_code)
            else:
                statuses.append(client.get("/ok").status_code)
        assert statuses.count(200) == 30
        assert statuses.count(500) == 10
        errors = current_state(app).get(ErrorReporter)
        assert errors is not None
        assert errors.captured == 10
        started = time.monotonic()
        Observe().shutdown(app)
        elapsed = time.monotonic() - started
        if fault == "hung":
            assert hung.accepted >= 1
    assert elapsed <= 2.5, elapsed


@pytest.mark.realtime
@pytest.mark.services
def test_celery_task_error_reaches_sentry_with_the_requests_ids(
    sentry: SentryReceiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A task published in a request fails in a real prefork worker (Redis broker): its
    Sentry event carries the request's correlation ID and the trace ID of the request's trace,
    in which the worker's CONSUMER span is the child of the request's PRODUCER span (and the
    publish's Redis commands are spans of their own)."""
    from .conftest import need_service

    need_service("Redis", "127.0.0.1", 6379)
    with OtlpReceiver() as otlp:
        queue = f"flask-observe-errors-{os.getpid()}-{int(time.time())}"
        settings = {
            "OBSERVE_TEST_BROKER": "redis://127.0.0.1:6379/11",
            "OBSERVE_TEST_QUEUE": queue,
            "FLASK_OBSERVE_TRACING_ENDPOINT": otlp.endpoint,
            "FLASK_OBSERVE_SENTRY_DSN": sentry.dsn,
            "FLASK_OBSERVE_LOG_DIR": str(tmp_path),
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        sys.modules.pop("tests.apps.error_worker_app", None)
        # A fresh import (a fresh app, set up from this test's environment).
        module = importlib.import_module("tests.apps.error_worker_app")

        with celery_worker("tests.apps.error_worker_app:celery", queue) as worker:
            try:
                response = module.app.test_client().post(
                    "/orders/77/charge", headers={"X-Request-ID": "celery-err-1"}
                )
                assert response.status_code == 200
                current_state(module.app).get(TracingSetup).provider.force_flush()  # type: ignore[union-attr]
                events = wait_for(lambda: worker.poll() is None and sentry.events(), 60, 0.2)
                if not events:
                    pytest.fail(
                        f"no Sentry event from the worker; its output:\n{stop_process(worker)}"
                    )

                def consumer() -> list[dict[str, Any]]:
                    return [s for s in otlp.spans() if s["kind"] == "CONSUMER"]

                assert wait_for(consumer, 30), "no CONSUMER span from the worker"
                spans = otlp.spans()
            finally:
                module.observe.shutdown(module.app)
    (event,) = events
    producer = next(s for s in spans if s["kind"] == "PRODUCER")
    run = next(s for s in spans if s["kind"] == "CONSUMER")
    assert producer["name"] == "apply_async/tests.charge_card"
    assert run["name"] == "run/tests.charge_card"
    assert run["trace_id"] == producer["trace_id"]
    assert run["parent_span_id"] == producer["span_id"]
    # The publish went to Redis with redis-py: traced too, in the request's trace.
    redis_calls = [
        s
        for s in spans
        if s["attributes"].get("db.system.name") == "redis"
        and s["trace_id"] == producer["trace_id"]
    ]
    assert redis_calls, "no Redis span in the request's trace"
    assert event["tags"]["correlation_id"] == "celery-err-1"
    assert event["tags"]["trace_id"] == run["trace_id"]
    assert event["tags"]["span_id"] == run["span_id"]
    assert event["tags"]["celery.task_name"] == "tests.charge_card"
    assert event["exception"]["values"][0]["type"] == "ValueError"
    assert event["exception"]["values"][0]["mechanism"]["type"] == "celery"


def test_one_failing_scrape_is_one_view_in_sentry_the_trace_and_the_logs(
    tmp_path: Path,
) -> None:
    """The sample scraper, the demo platform on a real server, the local Sentry receiver and
    the OTLP receiver: a scrape of the account the platform does not know fails (handled by
    the scraper, which captures it). It gives one Sentry event, one trace and log lines that
    carry the same correlation_id and trace_id; the event's span is the scrape's server
    span, its breadcrumbs are the run's log lines, and it links to the trace in Jaeger
    (OBSERVE_TRACING_TRACE_URL)."""
    from sample_app import create_app, observe
    from sample_app.platform import create_platform_app

    from .conftest import LiveServer
    from .peers import iter_trace

    with OtlpReceiver() as otlp, SentryReceiver() as sentry:
        common = {
            "OBSERVE_LOG_DIR": str(tmp_path / "logs"),
            "OBSERVE_LOG_STDOUT": False,
            "OBSERVE_TRACING_ENDPOINT": otlp.endpoint,
        }
        platform_app = create_platform_app(**common)
        with LiveServer(platform_app) as platform:
            scraper = create_app(
                {
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'scraper.db'}",
                    "SCRAPER_PLATFORM_URL": platform.url,
                    "OBSERVE_SENTRY_DSN": sentry.dsn,
                    "OBSERVE_TRACING_TRACE_URL": "http://127.0.0.1:16686/trace/{trace_id}",
                    **common,
                }
            )
            try:
                response = scraper.test_client().post(
                    "/api/scrapes",
                    json={"platform": "instagram", "handle": "ghost_account"},
                    headers={"X-Request-ID": "one-view-1"},
                )
                assert response.status_code == 201, response.get_data(as_text=True)
                flush(scraper)
                for app in (scraper, platform_app):
                    current_state(app).get(TracingSetup).provider.force_flush()  # type: ignore[union-attr]
                events = wait_for(sentry.events, 10)
                spans = wait_for(lambda: len(otlp.spans()) >= 4 and otlp.spans(), 10)
            finally:
                observe.shutdown(scraper)
                Observe().shutdown(platform_app)
    (event,) = events
    root = next(
        s
        for s in spans
        if s["kind"] == "SERVER" and s["attributes"].get("correlation_id") == "one-view-1"
    )
    trace_id = root["trace_id"]
    assert root["name"] == "POST /api/scrapes"
    trace = list(iter_trace(spans, root))
    assert any(s["service"] == "demo-platform" for s in trace)
    # Sentry: the same IDs, the span the error happened in, the link to the trace.
    assert event["tags"]["correlation_id"] == "one-view-1"
    assert event["tags"]["trace_id"] == trace_id
    assert event["contexts"]["trace"] == {"trace_id": trace_id, "span_id": root["span_id"]}
    assert event["contexts"]["tracing"]["trace_url"] == (f"http://127.0.0.1:16686/trace/{trace_id}")
    assert event["tags"]["handle"] == "ghost_account"
    exception = event["exception"]["values"][0]
    assert exception["type"] == "PlatformError"
    assert exception["mechanism"] == {"type": "manual", "handled": True}
    assert event["transaction"] == "/api/scrapes"
    crumbs = [c["message"] for c in event["breadcrumbs"]["values"]]
    assert "scrape run started" in crumbs
    # The logs: the run's lines carry the same correlation and trace IDs.
    lines = [
        x
        for x in read_json_lines(tmp_path / "logs" / "app.log")
        if x.get("correlation_id") == "one-view-1"
    ]
    failed = [x for x in lines if x.get("message") == "account scrape failed"]
    assert failed
    assert failed[0]["trace_id"] == trace_id
    assert {x["trace_id"] for x in lines if "trace_id" in x} == {trace_id}
    access = [x for x in lines if x.get("logger") == "flask_observe.access"]
    assert access
    assert access[0]["trace_id"] == trace_id
