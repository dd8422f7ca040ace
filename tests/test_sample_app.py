"""The sample scraper: a realistic host, with the correlation spine visible end to end.

Real HTTP between the scraper and the demo platform (two Flask apps on loopback), real
SQLite/PostgreSQL, a real Celery worker on the machine's Redis, and ``python -m sample_app``
started the way the README tells a newcomer to.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from flask_observe import Observe
from flask_observe.alerting import RuleEngine
from flask_observe.breakers import BreakerRegistry
from flask_observe.errors.reporter import ErrorReporter
from flask_observe.logviewer import LogViewer
from flask_observe.state import current_state
from sample_app import DEMO_ACCOUNTS, create_app, observe
from sample_app.platform import account_data, create_platform_app

from .conftest import LiveServer, need_service, read_json_lines
from .peers import celery_worker, free_port, stop_process
from .test_logviewer_ui import browser  # noqa: F401  (the Chromium fixture)

ROOT = Path(__file__).resolve().parent.parent
HEALTH_TOKEN = "sample-SRU1vQP08dT-wRbCNTS-Cf5N"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[LiveServer]:
    """The demo platform API on a real port, logging to the test's log directory."""
    app = create_platform_app(OBSERVE_LOG_DIR=str(tmp_path / "logs"), OBSERVE_LOG_STDOUT=False)
    with LiveServer(app) as server:
        yield server
    Observe().shutdown(app)


@pytest.fixture
def make_scraper(tmp_path: Path, platform: LiveServer) -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def factory(**config: Any) -> Flask:
        settings = {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'scraper.db'}",
            "SCRAPER_PLATFORM_URL": platform.url,
            "OBSERVE_LOG_DIR": str(tmp_path / "logs"),
            "OBSERVE_LOG_STDOUT": False,
            "OBSERVE_AUTH_TOKEN": HEALTH_TOKEN,
            **config,
        }
        app = create_app(settings)
        made.append(app)
        return app

    yield factory
    for app in made:
        observe.shutdown(app)


def log_lines(tmp_path: Path, name: str = "app.log") -> list[dict[str, Any]]:
    return read_json_lines(tmp_path / "logs" / name)


def set_chaos(platform: LiveServer, **chaos: Any) -> None:
    response = requests.put(f"{platform.url}/admin/chaos", json=chaos, timeout=5)
    assert response.status_code == 200, response.text


def test_scrape_over_http_stores_snapshots_and_one_id_spans_both_services(
    make_scraper: Callable[..., Flask], tmp_path: Path
) -> None:
    """POST /api/scrapes scrapes every seeded account over real HTTP; the 404 account fails.

    Every line of that request — the scraper's, and the platform's (it is on the propagation
    allowlist) — carries the request's X-Request-ID.
    """
    client = make_scraper().test_client()
    response = client.post("/api/scrapes", headers={"X-Request-ID": "scrape-1"})
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == "scrape-1"
    run = response.json
    assert run["mode"] == "inline"
    assert run["correlation_id"] == "scrape-1"
    assert (run["accounts_total"], run["accounts_ok"], run["accounts_failed"]) == (
        len(DEMO_ACCOUNTS),
        len(DEMO_ACCOUNTS) - 1,
        1,
    )
    assert run["status"] == "partial"

    accounts = client.get("/api/accounts").json["accounts"]
    nasa = next(a for a in accounts if a["handle"] == "nasa")
    history = client.get(f"/api/accounts/{nasa['id']}").json["history"]
    assert len(history) == 1
    expected = account_data("twitter", "nasa", time.time())["followers"]
    assert abs(history[0]["followers"] - expected) <= expected * 0.001
    ghost = next(a for a in accounts if a["handle"] == "ghost_account")
    assert "404" in ghost["last_error"]

    lines = [x for x in log_lines(tmp_path) if x.get("correlation_id") == "scrape-1"]
    services = {x["service"] for x in lines}
    assert services == {"scraper", "demo-platform"}
    platform_access = [
        x
        for x in lines
        if x["logger"] == "flask_observe.access" and x["service"] == "demo-platform"
    ]
    assert len(platform_access) == len(DEMO_ACCOUNTS)
    assert {x["route"] for x in platform_access} == {"/v1/<platform>/users/<handle>"}
    failed = [x for x in lines if x["message"] == "account scrape failed"]
    assert [(x["handle"], x["upstream_status"]) for x in failed] == [("ghost_account", 404)]
    finished = next(x for x in lines if x["message"] == "scrape run finished")
    assert finished["run_id"] == run["id"]
    assert finished["status"] == "partial"
    own_access = [
        x for x in lines if x["logger"] == "flask_observe.access" and x["service"] == "scraper"
    ]
    assert [(x["route"], x["status"]) for x in own_access] == [("/api/scrapes", 201)]


def test_platform_down_fails_the_run_and_the_cli_exits_non_zero(
    make_scraper: Callable[..., Flask], platform: LiveServer, tmp_path: Path
) -> None:
    """Every platform call failing (injected 503s): run ``failed``, ``flask scrape`` exits 1,
    and the command's lines share the run's own correlation ID."""
    set_chaos(platform, failure_rate=1.0)
    app = make_scraper()
    result = app.test_cli_runner().invoke(args=["scrape", "--platform", "twitter"])
    assert result.exit_code == 1, result.output
    run = __import__("json").loads(result.output)
    assert run["status"] == "failed"
    assert run["trigger"] == "cli"
    assert run["accounts_failed"] == 2
    lines = [x for x in log_lines(tmp_path) if x.get("correlation_id") == run["correlation_id"]]
    statuses = sorted(
        x["upstream_status"] for x in lines if x["message"] == "account scrape failed"
    )
    assert statuses == [503, 503]
    assert any(x["message"] == "injected failure" for x in lines)


def test_cli_scrape_of_one_account_succeeds(make_scraper: Callable[..., Flask]) -> None:
    """``flask scrape --handle`` scrapes just that account and exits 0."""
    app = make_scraper()
    result = app.test_cli_runner().invoke(args=["scrape", "--handle", "veritasium"])
    assert result.exit_code == 0, result.output
    assert '"status": "succeeded"' in result.output
    assert '"accounts_ok": 1' in result.output


def test_platform_latency_is_injected_and_configurable(platform: LiveServer) -> None:
    """PUT /admin/chaos changes latency at run time; invalid chaos is a 400."""
    set_chaos(platform, latency_ms=150)
    started = time.perf_counter()
    assert requests.get(f"{platform.url}/v1/twitter/users/nasa", timeout=5).status_code == 200
    assert time.perf_counter() - started >= 0.15
    bad = requests.put(f"{platform.url}/admin/chaos", json={"failure_status": 200}, timeout=5)
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/api/scrapes", {"platform": "myspace"}, 400),
        ("post", "/api/scrapes", {"handle": "../../admin/chaos"}, 400),
        ("post", "/api/scrapes", "not json", 400),
        ("post", "/api/accounts", {"platform": "twitter"}, 400),
        ("post", "/api/accounts", {"platform": "twitter", "handle": "nasa"}, 409),
        ("get", "/api/accounts/999999", None, 404),
        ("get", "/api/runs/999999", None, 404),
        ("get", "/api/runs?status=exploded", None, 400),
        ("get", "/api/runs?limit=lots", None, 400),
    ],
)
def test_bad_input_gets_a_json_4xx_with_the_request_id(
    make_scraper: Callable[..., Flask], method: str, path: str, body: Any, status: int
) -> None:
    """Invalid input is refused with a JSON error naming the problem and the request's ID."""
    client = make_scraper().test_client()
    kwargs: dict[str, Any] = {"headers": {"X-Request-ID": "bad-input"}}
    if isinstance(body, dict):
        kwargs["json"] = body
    elif body is not None:
        kwargs["data"] = body
        kwargs["content_type"] = "application/json"
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert response.json["correlation_id"] == "bad-input"
    assert response.json["error"]


def test_add_account_then_scrape_it(make_scraper: Callable[..., Flask]) -> None:
    """A tracked account added through the API shows up in the next scrape's history."""
    client = make_scraper(SCRAPER_SEED_DEMO=False).test_client()
    created = client.post("/api/accounts", json={"platform": "youtube", "handle": "kurzgesagt"})
    assert created.status_code == 201
    assert client.post("/api/scrapes", json={"handle": "kurzgesagt"}).json["status"] == "succeeded"
    history = client.get(f"/api/accounts/{created.json['id']}").json["history"]
    assert len(history) == 1
    runs = client.get("/api/runs").json["runs"]
    assert len(runs) == 1
    assert runs[0]["accounts_total"] == 1


def test_index_page_lists_accounts_and_runs(make_scraper: Callable[..., Flask]) -> None:
    """The HTML page shows the accounts, and its form starts a scrape."""
    client = make_scraper().test_client()
    assert client.post("/scrape").status_code == 303
    page = client.get("/").get_data(as_text=True)
    for _, handle in DEMO_ACCOUNTS:
        assert handle in page
    assert "partial" in page


def test_third_party_hosts_do_not_get_the_request_id(make_scraper: Callable[..., Flask]) -> None:
    """Only the platform is on the allowlist: another host the scraper calls sees no ID."""
    seen: list[str | None] = []
    other = Flask("third-party")

    @other.get("/profile")
    def profile() -> str:
        from flask import request

        seen.append(request.headers.get("X-Request-ID"))
        return "<html></html>"

    app = make_scraper()

    @app.get("/fetch-third-party")
    def fetch() -> str:
        requests.get(f"{server.url}/profile", timeout=5)
        return "ok"

    with LiveServer(other) as server:
        app.test_client().get("/fetch-third-party", headers={"X-Request-ID": "private-1"})
    assert seen == [None]


# -- real services ------------------------------------------------------------------------


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A throwaway schema in the machine's PostgreSQL database ``test``."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = f"scraper_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 dbname=test user=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect("host=127.0.0.1 dbname=test user=postgres", autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.services
def test_on_postgresql(make_scraper: Callable[..., Flask], pg_schema: str) -> None:
    """The same scrape against the machine's PostgreSQL: rows land, runs are listed."""
    app = make_scraper(
        SQLALCHEMY_DATABASE_URI="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"options": f"-csearch_path={pg_schema}"}},
    )
    client = app.test_client()
    run = client.post("/api/scrapes", json={"platform": "twitter"}).json
    assert run["status"] == "succeeded"
    assert run["accounts_ok"] == 2
    import psycopg

    with psycopg.connect("host=127.0.0.1 dbname=test user=postgres") as conn:
        count = conn.execute(f'SELECT count(*) FROM "{pg_schema}".snapshots').fetchone()
    assert count == (2,)


def wait_for(predicate: Callable[[], Any], timeout: float, proc: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return None


def stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return (proc.communicate()[0] or b"").decode(errors="replace")[-4000:]


@pytest.mark.realtime
@pytest.mark.services
def test_celery_mode_runs_the_scrape_in_a_worker_with_the_request_id(
    make_scraper: Callable[..., Flask], platform: LiveServer, tmp_path: Path
) -> None:
    """With a broker configured, POST /api/scrapes answers 202 and a real worker scrapes.

    The worker (a separate process, Redis broker) logs the run with the publishing request's
    correlation ID, and its calls to the platform carry it too.
    """
    need_service("Redis", "127.0.0.1", 6379)
    queue = f"scraper-test-{uuid.uuid4().hex[:8]}"
    broker = "redis://127.0.0.1:6379/10"
    db_uri = f"sqlite:///{tmp_path / 'scraper.db'}"
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        FLASK_CELERY_BROKER_URL=broker,
        FLASK_CELERY_QUEUE=queue,
        FLASK_SQLALCHEMY_DATABASE_URI=db_uri,
        FLASK_SCRAPER_PLATFORM_URL=platform.url,
        FLASK_OBSERVE_LOG_DIR=str(tmp_path / "logs"),
        FLASK_OBSERVE_LOG_FILE_NAME="worker.log",
        FLASK_OBSERVE_LOG_STDOUT="false",
    )
    app = make_scraper(CELERY_BROKER_URL=broker, CELERY_QUEUE=queue)
    with celery_worker("sample_app.worker", queue, pool="solo", env=env, cwd=tmp_path) as worker:
        client = app.test_client()
        response = client.post(
            "/api/scrapes", json={"platform": "twitter"}, headers={"X-Request-ID": "queued-1"}
        )
        assert response.status_code == 202
        assert response.json["mode"] == "celery"
        assert response.json["status"] == "queued"
        run_id = response.json["id"]

        def finished() -> dict[str, Any] | None:
            run = client.get(f"/api/runs/{run_id}").json
            return run if run["status"] not in ("queued", "running") else None

        run = wait_for(finished, 60, worker)
        if run is None:
            pytest.fail(f"the worker never finished the run; its output:\n{stop_process(worker)}")
        assert run["status"] == "succeeded"
        assert run["accounts_ok"] == 2
        worker_lines = log_lines(tmp_path, "worker.log")
        task_lines = [x for x in worker_lines if x.get("run_id") == run_id]
        assert {x["correlation_id"] for x in task_lines} == {"queued-1"}
        assert {x["task_name"] for x in task_lines} == {"sample_app.scrape_run"}
        assert {x["message"] for x in task_lines} >= {"scrape run started", "scrape run finished"}
        platform_lines = [
            x
            for x in log_lines(tmp_path)
            if x["service"] == "demo-platform" and x["message"] == "served user"
        ]
        assert {x["correlation_id"] for x in platform_lines} == {"queued-1"}


@pytest.mark.realtime
def test_python_m_sample_app_serves_on_embedded_defaults(tmp_path: Path) -> None:
    """The README's first command, as a newcomer runs it: the app and the demo platform
    start, a scrape works over real sockets, and ./logs holds JSON lines with the ID."""
    port, platform_port = free_port(), free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        # The default is SQLite in the instance folder; keep the repository's one untouched.
        FLASK_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'scraper.db'}",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sample_app",
            "--port",
            str(port),
            "--platform-port",
            str(platform_port),
            "--platform-failure-rate",
            "0",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    collected: list[str] = []
    reader = threading.Thread(
        target=lambda: collected.extend(line.decode(errors="replace") for line in proc.stdout),
        daemon=True,
    )
    reader.start()

    def finish() -> str:
        stop(proc)
        reader.join(10)
        return "".join(collected)[-4000:]

    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return requests.get(f"{base}/api/accounts", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        if not wait_for(up, 30, proc):
            pytest.fail(f"python -m sample_app did not come up; output:\n{finish()}")
        response = requests.post(
            f"{base}/api/scrapes", headers={"X-Request-ID": "newcomer-1"}, timeout=30
        )
        assert response.status_code == 201
        assert response.headers["X-Request-ID"] == "newcomer-1"
        assert response.json()["status"] == "partial"  # the ghost account always fails
        assert requests.get(f"{base}/nope", timeout=5).headers["X-Request-ID"]
        # No token in the environment: this process made one, printed once, and it opens
        # the log viewer.
        printed = re.findall(r"Access token for this process .*\): (\S+)", "".join(collected))
        assert len(printed) == 1, collected
        # ... next to the URLs to open, every one flask_observe serves (Observe.urls()).
        banner = "".join(collected)
        assert f" * The scraper: {base}/" in banner
        for label, path in [
            ("log viewer", "/observe/logs"),
            ("health", "/health"),
            ("readiness", "/health/ready"),
            ("liveness", "/health/live"),
            ("metrics", "/metrics"),
            ("logs API", "/api/logs/files"),
        ]:
            assert re.search(rf"^     {label} +{base}{path}$", banner, re.MULTILINE), banner
        files = requests.get(
            f"{base}/api/logs/files", headers={"Authorization": f"Bearer {printed[0]}"}, timeout=5
        )
        assert files.status_code == 200
        assert [f["name"] for f in files.json()["files"]] == ["app.log"]
    finally:
        output = finish()
    assert printed[0] not in (tmp_path / "logs" / "app.log").read_text()
    lines = read_json_lines(tmp_path / "logs" / "app.log")
    mine = [x for x in lines if x.get("correlation_id") == "newcomer-1"]
    assert {x["service"] for x in mine} == {"scraper", "demo-platform"}, output
    # Console output is JSON lines too (stdout is on by default).
    json_lines = [line for line in output.splitlines() if line.startswith("{")]
    assert json_lines


# -- tracing and error reporting (docs/tracing.md, docs/errors.md) ------------------------


@pytest.mark.realtime
def test_debug_fail_route_sends_an_error_to_sentry_with_the_request_id(
    make_scraper: Callable[..., Flask], tmp_path: Path
) -> None:
    """GET /api/debug/fail fails on purpose: a JSON 500 naming the request's ID, and one
    Sentry event tagged with the same ID as the log lines."""
    from .peers import SentryReceiver
    from .peers import wait_for as wait_until

    with SentryReceiver() as sentry:
        app = make_scraper(OBSERVE_SENTRY_DSN=sentry.dsn)
        response = app.test_client().get(
            "/api/debug/fail",
            headers={"X-Request-ID": "boom-1", "Authorization": f"Bearer {HEALTH_TOKEN}"},
        )
        assert response.status_code == 500
        assert response.json["correlation_id"] == "boom-1"
        errors = current_state(app).get(ErrorReporter)
        assert errors is not None
        errors.client.flush(timeout=5)
        events = wait_until(sentry.events, 10)
    assert [e["tags"]["correlation_id"] for e in events] == ["boom-1"]
    assert events[0]["exception"]["values"][0]["value"] == (
        "deliberate failure from GET /api/debug/fail"
    )
    assert events[0]["transaction"] == "/api/debug/fail"
    lines = [x for x in log_lines(tmp_path) if x.get("correlation_id") == "boom-1"]
    assert "about to fail on purpose (GET /api/debug/fail)" in {x["message"] for x in lines}


@pytest.mark.realtime
def test_python_m_sample_app_with_a_collector_and_sentry(tmp_path: Path) -> None:
    """As the docs tell a newcomer: ``OTEL_EXPORTER_OTLP_ENDPOINT`` and ``SENTRY_DSN`` set,
    ``python -m sample_app``. A scrape is one trace across the scraper (service ``scraper``)
    and the demo platform (service ``demo-platform``); the error route's Sentry event has the
    trace ID and correlation ID of its log line."""
    from .peers import OtlpReceiver, SentryReceiver
    from .peers import wait_for as wait_until

    port, platform_port = free_port(), free_port()
    with OtlpReceiver() as collector, SentryReceiver() as sentry:
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            FLASK_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'scraper.db'}",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="200",
            SENTRY_DSN=sentry.dsn,
            GRPC_VERBOSITY="ERROR",
            FLASK_OBSERVE_AUTH_TOKEN=HEALTH_TOKEN,  # the error route is the operator's
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sample_app",
                "--port",
                str(port),
                "--platform-port",
                str(platform_port),
                "--platform-failure-rate",
                "0",
                "--platform-latency-ms",
                "0",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:

            def up() -> bool:
                try:
                    return requests.get(f"{base}/api/accounts", timeout=2).status_code == 200
                except requests.ConnectionError:
                    return False

            if not wait_for(up, 30, proc):
                pytest.fail(f"python -m sample_app did not come up; output:\n{stop(proc)}")
            scrape = requests.post(
                f"{base}/api/scrapes", headers={"X-Request-ID": "newcomer-trace"}, timeout=30
            )
            assert scrape.status_code == 201
            fail = requests.get(
                f"{base}/api/debug/fail",
                headers={
                    "X-Request-ID": "newcomer-fail",
                    "Authorization": f"Bearer {HEALTH_TOKEN}",
                },
                timeout=10,
            )
            assert fail.status_code == 500

            def scrape_trace() -> list[dict[str, Any]] | None:
                spans = collector.spans()
                roots = [
                    s
                    for s in spans
                    if s["attributes"].get("correlation_id") == "newcomer-trace"
                    and s["service"] == "scraper"
                ]
                if not roots:
                    return None
                trace = [s for s in spans if s["trace_id"] == roots[0]["trace_id"]]
                platform = [s for s in trace if s["service"] == "demo-platform"]
                return trace if len(platform) >= len(DEMO_ACCOUNTS) else None

            trace = wait_until(scrape_trace, 20)
            assert trace, f"no complete trace; output:\n{stop(proc)}"
            # Two events: the scrape's handled failure (the unknown demo account) and the
            # error route's.
            events = wait_until(lambda: len(sentry.events()) >= 2 and sentry.events(), 20)
            assert events, f"no Sentry event; output:\n{stop(proc)}"
            # The failing request's span is exported in a later batch than the Sentry event
            # is sent: wait for it rather than race the exit flush.
            fail_spans = wait_until(
                lambda: [
                    s
                    for s in collector.spans()
                    if s["attributes"].get("correlation_id") == "newcomer-fail"
                ],
                20,
            )
            assert fail_spans, f"no span for the failing request; output:\n{stop(proc)}"
        finally:
            output = stop(proc)
    kinds = {(s["service"], s["kind"]) for s in trace}
    assert kinds >= {
        ("scraper", "SERVER"),
        ("scraper", "CLIENT"),  # SQL and the HTTP calls
        ("demo-platform", "SERVER"),
    }, output
    assert any(s["attributes"].get("db.system.name") == "sqlite" for s in trace)
    by_id = {e["tags"]["correlation_id"]: e for e in events}
    assert set(by_id) == {"newcomer-trace", "newcomer-fail"}
    assert by_id["newcomer-trace"]["tags"]["trace_id"] == trace[0]["trace_id"]
    event = by_id["newcomer-fail"]
    fail_span = fail_spans[0]
    assert event["tags"]["trace_id"] == fail_span["trace_id"]
    lines = read_json_lines(tmp_path / "logs" / "app.log")
    fail_lines = [x for x in lines if x.get("correlation_id") == "newcomer-fail"]
    assert fail_lines
    assert {x["trace_id"] for x in fail_lines} == {fail_span["trace_id"]}


@pytest.mark.realtime
def test_no_successful_scrape_rule_fires_and_resolves(
    make_scraper: Callable[..., Flask], platform: LiveServer
) -> None:
    """The sample's business rule: with the platform failing every call since start-up, it
    fires once the stale limit has passed ("since start-up"); after one successful scrape it
    resolves."""
    from .alert_sinks import Sink

    with Sink() as sink:
        set_chaos(platform, failure_rate=1.0)
        app = make_scraper(
            SCRAPER_STALE_HOURS=0.3 / 3600,
            OBSERVE_ALERT_CHANNELS=[{"type": "slack", "url": sink.url + "/s"}],
            OBSERVE_ALERT_ALLOW_HTTP=True,
            OBSERVE_ALERT_ALLOW_HOSTS=["127.0.0.1"],
            OBSERVE_ALERT_RESOLVE_AFTER_SECONDS=0,  # resolve at the first passing evaluation
        )
        engine = current_state(app).get(RuleEngine)
        assert engine is not None
        engine.rules[:] = [r for r in engine.rules if r.name == "NoSuccessfulScrape"]
        client = app.test_client()
        assert client.post("/api/scrapes").get_json()["accounts_ok"] == 0
        time.sleep(0.4)
        (alert,) = engine.evaluate()
        assert alert.status == "firing"
        assert alert.summary.startswith("no account scraped successfully since start-up")
        set_chaos(platform, failure_rate=0.0)
        breaker = current_state(app).get(BreakerRegistry).get("platform-api")
        breaker.close()  # its reset timeout (30 s) passed and a trial call succeeded
        assert client.post("/api/scrapes").get_json()["accounts_ok"] >= 1
        assert [a.status for a in engine.evaluate()] == ["resolved"]


def test_business_metrics_on_metrics_endpoint(make_scraper: Callable[..., Flask]) -> None:
    """A scrape shows up in /metrics: accounts by platform and status, freshness, followers."""
    client = make_scraper().test_client()
    client.post("/api/scrapes").get_data()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'scraper_accounts_scraped_total{platform="twitter",status="ok"} 2.0' in text
    assert 'scraper_accounts_scraped_total{platform="instagram",status="failed"} 1.0' in text
    assert "scraper_last_success_timestamp_seconds " in text
    assert 'scraper_followers{handle="nasa",platform="twitter"}' in text
    assert 'scraper_scrape_duration_seconds_count{outcome="success",platform="youtube"} 1.0' in text
    assert 'scraper_scrape_total{outcome="failure",platform="instagram"} 1.0' in text
    assert 'operation_consecutive_failures{operation="scraper_scrape"}' in text
    assert 'http_requests_total{method="POST",route="/api/scrapes",status="201"} 1.0' in text


# -- health -------------------------------------------------------------------------------


def test_sample_registers_its_dependencies_in_health(make_scraper: Callable[..., Flask]) -> None:
    """/health/ready answers application/health+json; with the token /health shows the
    database (and the app pool's use), the platform API, its circuit breaker, disk, memory."""
    client = make_scraper().test_client()
    ready = client.get("/health/ready")
    assert (ready.status_code, ready.content_type, ready.json) == (
        200,
        "application/health+json",
        {"status": "pass"},
    )
    assert client.get("/health/startup").status_code == 200  # marked by create_app()
    full = client.get("/health", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"}).json
    assert full["serviceId"] == "scraper"
    assert full["version"] == "1.0.0"
    assert {
        "db:responseTime",
        "db:connections",
        "platform-api:responseTime",
        "platform-api:circuitBreaker",
        "disk:utilization",
        "memory:utilization",
        "memory:rss",
        "startup:completed",
        "uptime",
        "score",
    } <= set(full["checks"])
    assert full["checks"]["db:responseTime"][0]["componentType"] == "datastore"


def test_platform_failures_open_the_breaker_and_health_warns(
    make_scraper: Callable[..., Flask], platform: LiveServer
) -> None:
    """Every platform call failing: after 5 failures the breaker opens and the remaining
    accounts are not even tried; /health shows the open circuit as a warning (readiness 200:
    the breaker is not critical, and the platform's own health endpoint still answers)."""
    set_chaos(platform, failure_rate=1.0)
    app = make_scraper()
    client = app.test_client()
    run = client.post("/api/scrapes").json
    assert run["accounts_failed"] == len(DEMO_ACCOUNTS)
    accounts = client.get("/api/accounts").json["accounts"]
    errors = [a["last_error"] for a in accounts]
    assert sum("circuit open" in e for e in errors) == len(DEMO_ACCOUNTS) - 4
    ready = client.get("/health/ready", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"})
    assert ready.status_code == 200
    circuit = ready.json["checks"]["platform-api:circuitBreaker"][0]
    assert (circuit["observedValue"], circuit["status"]) == ("open", "warn")


@pytest.mark.realtime
def test_new_user_sees_readiness_turn_503_when_the_platform_stops(tmp_path: Path) -> None:
    """As the docs tell a newcomer: start the sample, curl /health/ready (200,
    application/health+json); stop the platform it scrapes: readiness turns 503 within the
    cache period plus the check's deadline, each answer within the deadline, while
    /health/live stays 200."""
    # The demo platform with its own Observe: the scraper's check calls its /health/ready.
    platform_app = create_platform_app(OBSERVE_LOG_STDOUT=False)
    server = LiveServer(platform_app).__enter__()
    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        FLASK_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'scraper.db'}",
        FLASK_SCRAPER_PLATFORM_URL=server.url,
        FLASK_OBSERVE_LOG_STDOUT="false",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sample_app", "--port", str(port), "--no-platform"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return requests.get(f"{base}/health/live", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        if not wait_for(up, 30, proc):
            pytest.fail(f"python -m sample_app did not come up; output:\n{stop(proc)}")
        ready = requests.get(f"{base}/health/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.headers["Content-Type"] == "application/health+json"
        assert ready.json() == {"status": "pass"}

        server.__exit__(None, None, None)
        stopped = time.monotonic()
        turned = None
        while time.monotonic() - stopped < 10:
            started = time.perf_counter()
            response = requests.get(f"{base}/health/ready", timeout=10)
            assert time.perf_counter() - started < 2.0 + 0.3
            assert requests.get(f"{base}/health/live", timeout=5).status_code == 200
            if response.status_code == 503:
                turned = time.monotonic() - stopped
                assert response.json() == {"status": "fail"}
                break
            time.sleep(0.1)
        # Cache period (3 s by default) + the check's deadline (2 s) + slack.
        assert turned is not None
        assert turned <= 3.0 + 2.0 + 0.5, turned
    finally:
        stop(proc)
        server.__exit__(None, None, None)
        Observe().shutdown(platform_app)


# -- log viewer ---------------------------------------------------------------------------


def test_without_a_token_the_viewer_is_off_and_no_process_makes_one(
    make_scraper: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    """``create_app()`` without a token (a ``flask`` command, a Celery worker, each gunicorn
    worker) makes none and prints nothing: its viewer is off, not open, and the index page
    does not link to it. Only ``python -m sample_app`` makes one (see the next test)."""
    app = make_scraper(OBSERVE_AUTH_TOKEN=None)
    assert capsys.readouterr().err == ""
    assert not app.config.get("OBSERVE_AUTH_TOKEN")
    assert current_state(app).get(LogViewer) is None
    client = app.test_client()
    assert client.get("/api/logs/files").status_code == 404
    assert "/observe/logs" not in client.get("/").get_data(as_text=True)


def test_with_a_token_the_viewer_finds_a_request_and_the_page_links_to_it(
    make_scraper: Callable[..., Flask], tmp_path: Path
) -> None:
    """With a token the viewer is on: a run's lines are found by its correlation ID, the
    index page links runs to the viewer, and the token is never logged."""
    app = make_scraper()
    client = app.test_client()
    with client.post("/api/scrapes", headers={"X-Request-ID": "viewer-1"}):
        pass
    assert client.get("/api/logs/search?correlation_id=viewer-1").status_code == 401
    found = client.get(
        "/api/logs/search?correlation_id=viewer-1&level=warning",
        headers={"Authorization": f"Bearer {HEALTH_TOKEN}"},
    ).json["results"]
    assert {r["record"]["message"] for r in found} >= {"account scrape failed"}
    assert "/observe/logs#correlation_id=viewer-1" in client.get("/").get_data(as_text=True)
    assert HEALTH_TOKEN not in (tmp_path / "logs" / "app.log").read_text()


def test_a_configured_token_is_used_and_not_printed(
    make_scraper: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    """FLASK_OBSERVE_AUTH_TOKEN (here: the config key) wins; nothing is printed."""
    app = make_scraper(OBSERVE_AUTH_TOKEN="chosen-1erh8vK37O6cb2c96RVdCpwl")
    assert "Access token" not in capsys.readouterr().err
    assert app.config["OBSERVE_AUTH_TOKEN"] == "chosen-1erh8vK37O6cb2c96RVdCpwl"


# -- the habits it teaches: CSRF, headers, a protected debug route, bounded ids, safe boot --

BIG = 2**63  # one past SQLite's and PostgreSQL's largest integer


def runs(app: Flask) -> int:
    return len(app.test_client().get("/api/runs").json["runs"])


def test_cross_site_writes_are_refused_same_site_and_scripts_are_not(
    make_scraper: Callable[..., Flask],
) -> None:
    """A browser's cross-site POST to the page's form or the JSON API is 403 and starts no
    run; the page's own form (same origin) and a script without browser headers (curl) work."""
    app = make_scraper()
    client = app.test_client()
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert client.post("/scrape", headers=evil).status_code == 403
    assert client.post("/api/scrapes", headers=evil).status_code == 403
    assert (
        client.post("/api/scrapes", headers={"Origin": "https://evil.example"}).status_code == 403
    )
    assert runs(app) == 0
    own = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/scrape", headers=own).status_code == 303
    assert client.post("/api/scrapes").status_code == 201  # curl: no browser headers
    assert runs(app) == 2


def test_the_page_cannot_be_framed_or_run_injected_code(make_scraper: Callable[..., Flask]) -> None:
    response = make_scraper().test_client().get("/")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # default-src 'none': no script at all
    assert "default-src 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<style>" not in response.get_data(as_text=True)  # the style sheet is a file


def test_the_deliberate_failure_needs_the_operators_token(
    make_scraper: Callable[..., Flask],
) -> None:
    """Anyone could spend the availability budget with a public 500-on-demand route."""
    client = make_scraper().test_client()
    assert client.get("/api/debug/fail").status_code == 401
    assert (
        client.get("/api/debug/fail", headers={"Authorization": "Bearer wrong"}).status_code == 403
    )
    ok = client.get("/api/debug/fail", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"})
    assert ok.status_code == 500


@pytest.mark.parametrize("path", [f"/api/accounts/{BIG}", f"/api/runs/{BIG}", "/api/runs/0"])
def test_an_id_too_large_for_the_database_is_a_404_not_a_500(
    make_scraper: Callable[..., Flask], path: str
) -> None:
    assert make_scraper().test_client().get(path).status_code == 404


@pytest.mark.realtime
def test_a_cross_site_form_in_a_real_browser_starts_no_scrape(
    make_scraper: Callable[..., Flask],
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    """An attacker's page on another origin auto-submits a form to the scraper's /scrape and
    posts to /api/scrapes with fetch (no-cors): Chromium sends them, the app refuses both, no
    run starts; the app's own page's button still works."""
    app = make_scraper()
    with LiveServer(app) as scraper:

        def attacker(environ: Any, start_response: Any) -> list[bytes]:
            page = f"""<!doctype html><form id=f method=post action="{scraper.url}/scrape"></form>
            <script>fetch("{scraper.url}/api/scrapes", {{method: "POST", mode: "no-cors"}})
            .finally(() => document.getElementById("f").submit());</script>"""
            start_response("200 OK", [("Content-Type", "text/html")])
            return [page.encode()]

        evil = make_server("127.0.0.1", 0, attacker, threaded=True)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        try:
            page = browser.new_page()
            # "localhost" vs "127.0.0.1": another site for the browser.
            page.goto(f"http://localhost:{evil.server_port}/")
            page.wait_for_url(f"{scraper.url}/scrape", timeout=10_000)
            assert "cross-site request refused" in page.content()
            assert runs(app) == 0
            page.goto(f"{scraper.url}/")
            page.click("button[type=submit]")
            page.wait_for_url(f"{scraper.url}/", timeout=10_000)
            assert runs(app) == 1
        finally:
            evil.shutdown()
            evil.server_close()


def _boot(database: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
                "SCRAPER_PLATFORM_URL": "http://127.0.0.1:9",
                "OBSERVE_LOG_STDOUT": False,
                "OBSERVE_ENABLED": False,
            }
        )
        observe.shutdown(app)
        results.put("ok")
    except Exception as exc:  # the failure this test is about
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.realtime
def test_workers_booting_at_once_on_a_fresh_database_all_start_and_seed_once(
    tmp_path: Path,
) -> None:
    """8 processes run create_app at the same moment on a new SQLite database, 5 times: every
    one boots (no UNIQUE constraint failure), and the demo accounts are there once."""
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        database = tmp_path / f"fresh-{attempt}.db"
        barrier, results = context.Barrier(8), context.Queue()
        procs = [
            context.Process(target=_boot, args=(str(database), barrier, results)) for _ in range(8)
        ]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(30)
        assert outcomes == ["ok"] * 8, outcomes
        with sqlite3.connect(database) as conn:
            assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (6,)
