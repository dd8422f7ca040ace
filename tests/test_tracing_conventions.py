"""Semantic conventions: real spans of the sample app against the current conventions'
required and recommended attributes; the way back to the old names; error.type; the
resource; user hooks."""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from flask_observe import Observe
from flask_observe.state import current_state
from flask_observe.tracing import TracingSetup

from .conftest import LiveServer
from .peers import OtlpReceiver, iter_trace, refused_port, wait_for

ROOT = Path(__file__).resolve().parent.parent

# The conventions, written down from the specification (the Python package
# opentelemetry-semantic-conventions carries the attribute names, checked below, but not
# their requirement levels), at the version of the installed package (schema 1.44.0):
# https://github.com/open-telemetry/semantic-conventions/blob/v1.44.0/docs/http/http-spans.md
# https://github.com/open-telemetry/semantic-conventions/blob/v1.44.0/docs/db/sql.md
# https://github.com/open-telemetry/semantic-conventions/blob/v1.44.0/docs/db/database-spans.md
HTTP_SERVER = {
    "required": ("http.request.method", "url.path", "url.scheme"),
    # name -> when it is required
    "conditional": {
        "http.response.status_code": "a response was sent",
        "http.route": "a route matched",
        "server.port": "server.address is set",
        "error.type": "the request failed",
        "url.query": "the request had a query string",
    },
    "recommended": (
        "client.address",
        "network.peer.address",
        "network.peer.port",
        "network.protocol.version",
        "server.address",
        "user_agent.original",
    ),
}
HTTP_CLIENT = {
    "required": ("http.request.method", "server.address", "server.port", "url.full"),
    "conditional": {
        "http.response.status_code": "a response was received",
        "error.type": "the call failed",
    },
    "recommended": ("network.peer.address", "network.peer.port", "network.protocol.version"),
}
SQL = {
    "required": ("db.system.name",),
    "conditional": {
        "db.namespace": "available without a network call",
        "error.type": "the operation failed",
        "db.response.status_code": "the operation failed with a code",
    },
    "recommended": (
        "db.collection.name",
        "db.operation.batch.size",
        "db.operation.name",
        "db.query.summary",
        "db.query.text",
        "db.stored_procedure.name",
        "server.address",
    ),
}
#: Recommended attributes the spans leave out, and why (docs/tracing.md says the same).
NOT_SENT = {
    # OBSERVE_TRACING_REDACT (default on): personal data, as the access log leaves it out.
    "client.address": "the client's address is removed before export",
    "url.query": "query strings are removed before export",
    # The WSGI instrumentation does not see the socket.
    "network.peer.address": "not known to a WSGI application",
    "network.peer.port": "not known to a WSGI application",
    # requests does not expose the peer's socket.
    # SQL: what the instrumentation cannot know without parsing the statement, which the
    # conventions say not to do for these.
    "db.collection.name": "SHOULD NOT be extracted from the query text",
    "db.query.summary": "no query summary is generated",
    "db.operation.batch.size": "only for batch operations",
    "db.stored_procedure.name": "no stored procedure is called",
    "server.address": "SQLite has no server",
}
#: The old names no span may carry by default.
OLD_NAMES = (
    "http.method",
    "http.status_code",
    "http.target",
    "http.url",
    "http.scheme",
    "http.host",
    "http.flavor",
    "http.user_agent",
    "http.server_name",
    "net.host.name",
    "net.host.port",
    "net.peer.ip",
    "net.peer.name",
    "net.peer.port",
    "db.statement",
    "db.system",
    "db.name",
    "db.operation",
)


def stable_attribute_names() -> set[str]:
    """Every stable attribute name the opentelemetry-semantic-conventions package defines."""
    import opentelemetry.semconv.attributes as package

    names: set[str] = set()
    for module_info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, str) and "." in value:
                names.add(value)
    return names


def test_the_conventions_written_here_name_stable_attributes_of_the_package() -> None:
    """Each attribute in the lists above is a stable name of the installed conventions
    package (a renamed or misspelt one fails here, not silently in the comparison)."""
    known = stable_attribute_names()
    listed = {
        name
        for spec in (HTTP_SERVER, HTTP_CLIENT, SQL)
        for group in ("required", "recommended")
        for name in spec[group]  # type: ignore[attr-defined]
    } | {name for spec in (HTTP_SERVER, HTTP_CLIENT, SQL) for name in spec["conditional"]}
    assert listed - known == set()


def check(span: dict[str, Any], spec: dict[str, Any], conditions: dict[str, bool]) -> list[str]:
    """What ``span`` lacks of ``spec``: required, conditionally required whose condition
    holds, recommended not explained in NOT_SENT."""
    attributes = span["attributes"]
    missing = [f"required {n}" for n in spec["required"] if n not in attributes]
    for name in spec["conditional"]:
        if conditions.get(name) and name not in attributes and name not in NOT_SENT:
            missing.append(f"conditionally required {name}")
    for name in spec["recommended"]:
        if name not in attributes and name not in NOT_SENT:
            missing.append(f"recommended {name}")
    old = [f"old name {n}" for n in OLD_NAMES if n in attributes]
    return missing + old


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def flush(*apps: Flask) -> None:
    for app in apps:
        tracing = current_state(app).get(TracingSetup)
        assert tracing is not None
        tracing.provider.force_flush()  # type: ignore[attr-defined]


def test_sample_app_spans_follow_the_current_conventions(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """A real scrape of the sample app over real HTTP servers (scraper and demo platform),
    one account failing (404): every SERVER, HTTP CLIENT and SQL span carries what the
    conventions require, what they require on its conditions, and what they recommend (but
    the documented exceptions); no old name; the span names are ``{method} {route}``, the
    method, and the SQL operation — never a path (the SQLite file's directory is nowhere)."""
    from sample_app import DEMO_ACCOUNTS, create_app, observe
    from sample_app.platform import create_platform_app

    common = {
        "OBSERVE_LOG_DIR": str(tmp_path / "logs"),
        "OBSERVE_LOG_STDOUT": False,
        "OBSERVE_TRACING_ENDPOINT": receiver.endpoint,
    }
    platform_app = create_platform_app(**common)
    database = tmp_path / "scraper.db"
    with LiveServer(platform_app) as platform:
        scraper = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
                "SCRAPER_PLATFORM_URL": platform.url,
                **common,
            }
        )
        try:
            with LiveServer(scraper) as server:
                response = requests.post(
                    f"{server.url}/api/scrapes?source=test",
                    json={},
                    headers={"X-Request-ID": "semconv-1"},
                    timeout=30,
                )
                assert response.status_code == 201
            flush(scraper, platform_app)

            def complete() -> list[dict[str, Any]] | None:
                spans = receiver.spans()
                platform_servers = [
                    s for s in spans if s["kind"] == "SERVER" and s["service"] == "demo-platform"
                ]
                return spans if len(platform_servers) >= len(DEMO_ACCOUNTS) else None

            spans = wait_for(complete, 15)
            assert spans
        finally:
            observe.shutdown(scraper)
            Observe().shutdown(platform_app)
    root = next(
        s
        for s in spans
        if s["kind"] == "SERVER" and s["attributes"].get("correlation_id") == "semconv-1"
    )
    trace = list(iter_trace(spans, root))
    servers = [s for s in trace if s["kind"] == "SERVER"]
    calls = [s for s in trace if s["kind"] == "CLIENT" and "http.request.method" in s["attributes"]]
    sql = [s for s in trace if s["kind"] == "CLIENT" and "db.system.name" in s["attributes"]]
    assert len(servers) == len(DEMO_ACCOUNTS) + 1
    assert len(calls) == len(DEMO_ACCOUNTS)
    assert sql
    problems: dict[str, list[str]] = {}
    for span in servers:
        status = span["attributes"].get("http.response.status_code")
        conditions = {
            "http.response.status_code": True,
            "http.route": True,
            "server.port": "server.address" in span["attributes"],
            "error.type": status is not None and status >= 500,
            "url.query": span is root,
        }
        problems[f"{span['service']} {span['name']}"] = check(span, HTTP_SERVER, conditions)
        assert span["name"] == f"{span['attributes']['http.request.method']} " + str(
            span["attributes"]["http.route"]
        )
    for span in calls:
        conditions = {"http.response.status_code": True, "error.type": False}
        problems[f"call {span['name']}"] = check(span, HTTP_CLIENT, conditions)
        assert span["name"] == span["attributes"]["http.request.method"]
        assert span["attributes"]["server.port"] == platform.port
    for span in sql:
        assert span["attributes"]["db.namespace"] == "scraper.db"
        if span["name"] == "connect":  # a connection, not an operation: no query to name
            assert span["attributes"]["db.system.name"] == "sqlite"
            continue
        conditions = {"db.namespace": True}
        problems[f"sql {span['name']}"] = check(span, SQL, conditions)
        assert span["name"] == span["attributes"]["db.operation.name"]
        assert span["name"] in ("SELECT", "INSERT", "UPDATE", "DELETE")
    assert {k: v for k, v in problems.items() if v} == {}
    everything = repr([(s["name"], s["attributes"]) for s in spans])
    assert str(database.parent) not in everything
    assert "source=test" not in everything
    # The failed account: its platform span says 404 without an error (a client's mistake).
    statuses = sorted(s["attributes"]["http.response.status_code"] for s in servers)
    assert statuses == [200] * (len(DEMO_ACCOUNTS) - 1) + [201, 404]
    assert all("error.type" not in s["attributes"] for s in servers)


def traced(make_app: Callable[..., Flask], receiver: OtlpReceiver, **config: Any) -> Flask:
    settings: dict[str, Any] = {"log_stdout": False, "tracing_endpoint": receiver.endpoint}
    settings.update(config)
    return make_app("conv", **settings)


def db_app(app: Flask, tmp_path: Path) -> Flask:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'conv.db'}")

    @app.get("/rows")
    def rows() -> str:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS marks (x INTEGER)"))
            conn.execute(sa.text("INSERT INTO marks VALUES (1)"))
            conn.execute(sa.text("SELECT 1")).all()
        return "ok"

    @app.get("/bad-sql")
    def bad_sql() -> str:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table")).all()
        return "unreachable"

    return app


@pytest.mark.parametrize(
    ("semconv", "present", "absent"),
    [
        ("old", ("http.method", "http.status_code", "db.statement", "db.operation"), ("url.path",)),
        (
            "both",
            ("http.method", "http.request.method", "db.statement", "db.query.text"),
            (),
        ),
    ],
)
def test_the_old_names_or_both_when_asked(
    make_app: Callable[..., Flask],
    receiver: OtlpReceiver,
    tmp_path: Path,
    semconv: str,
    present: tuple[str, ...],
    absent: tuple[str, ...],
) -> None:
    """OBSERVE_TRACING_SEMCONV=old brings the names of before back; ``both`` writes both;
    either way the SQL span is named by its operation, never by the database file."""
    app = db_app(traced(make_app, receiver, tracing_semconv=semconv), tmp_path)
    assert app.test_client().get("/rows").status_code == 200
    flush(app)
    spans = wait_for(lambda: len(receiver.spans()) >= 3 and receiver.spans(), 10)
    attributes: dict[str, Any] = {}
    for span in spans:
        attributes.update(span["attributes"])
    assert [n for n in present if n not in attributes] == []
    assert [n for n in absent if n in attributes] == []
    query = next(s for s in spans if "SELECT 1" in repr(s["attributes"]))
    assert query["name"] == "SELECT"
    assert query["attributes"]["db.operation"] == "SELECT"
    assert query["attributes"]["db.name"] == "conv.db"


def test_the_instrumentations_own_variable_decides_when_the_key_is_not_set(
    make_app: Callable[..., Flask],
    receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_SEMCONV_STABILITY_OPT_IN=http/dup and no OBSERVE_TRACING_SEMCONV: both names, as
    OpenTelemetry documents the variable."""
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http/dup")
    app = traced(make_app, receiver)
    app.add_url_rule("/x", "x", lambda: "ok")
    app.test_client().get("/x")
    flush(app)
    (span,) = wait_for(receiver.spans, 10)
    assert span["attributes"]["http.method"] == "GET"
    assert span["attributes"]["http.request.method"] == "GET"


def test_failures_carry_error_type(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """A view that raises: the server span's error.type is the exception's class (not only
    "500"); a failing statement: the SQL span's error.type is the driver's exception and
    db.response.status_code its code; a call to a refused port: the client span's error.type
    is the requests exception. Unmatched routes are named by the method alone."""
    app = db_app(traced(make_app, receiver), tmp_path)
    port = refused_port()

    @app.get("/boom")
    def boom() -> str:
        raise LookupError("nothing there")

    @app.get("/call")
    def call() -> str:
        try:
            requests.get(f"http://127.0.0.1:{port}/x", timeout=2)
        except requests.ConnectionError:
            return "refused"
        return "unexpected"

    client = app.test_client()
    assert client.get("/boom").status_code == 500
    assert client.get("/bad-sql").status_code == 500
    assert client.get("/call").get_data(as_text=True) == "refused"
    assert client.get("/no/such/page/42").status_code == 404
    flush(app)
    spans = wait_for(lambda: len(receiver.spans()) >= 7 and receiver.spans(), 10)
    by_name = {(s["kind"], s["name"]): s["attributes"] for s in spans}
    assert by_name[("SERVER", "GET /boom")]["error.type"] == "LookupError"
    assert by_name[("SERVER", "GET /bad-sql")]["error.type"] == "sqlalchemy.exc.OperationalError"
    failed_sql = next(s for s in spans if "no_such_table" in repr(s["attributes"]))
    assert failed_sql["name"] == "SELECT"
    assert failed_sql["attributes"]["error.type"] == "sqlite3.OperationalError"
    assert failed_sql["attributes"]["db.response.status_code"] == "SQLITE_ERROR"
    refused = next(s for s in spans if s["kind"] == "CLIENT" and "url.full" in s["attributes"])
    assert refused["attributes"]["error.type"] == "ConnectionError"
    assert ("SERVER", "GET") in by_name
    assert by_name[("SERVER", "GET")]["http.response.status_code"] == 404


def test_the_resource_names_host_process_and_instance(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """host.name, process.pid and service.instance.id are on every span without any
    variable set; OTEL_RESOURCE_ATTRIBUTES wins over them."""
    import socket

    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "host.name=web-from-env")
    app = traced(make_app, receiver)
    app.add_url_rule("/x", "x", lambda: "ok")
    app.test_client().get("/x")
    flush(app)
    (span,) = wait_for(receiver.spans, 10)
    resource = span["resource"]
    assert resource["process.pid"] == os.getpid()
    assert len(resource["service.instance.id"]) == 36
    # The process's own ID (the one its OTLP logs and metrics carry), not the SDK's.
    from flask_observe.tracing.conventions import instance_id

    assert resource["service.instance.id"] == instance_id()
    assert resource["host.name"] == "web-from-env" != socket.gethostname()


def test_a_forked_child_reports_its_own_pid_and_instance(tmp_path: Path) -> None:
    """An app set up before a fork (gunicorn --preload): spans started in the child carry
    the child's process.pid and a service.instance.id of its own."""
    script = textwrap.dedent(
        """
        import json, os, sys
        from flask import Flask
        from flask_observe import Observe
        from flask_observe.tracing import TracingSetup

        app = Flask("forked")
        app.config.update(OBSERVE_LOG_STDOUT=False, OBSERVE_TRACING_ENABLED=True,
                          OBSERVE_TRACING_EXPORTER="none")
        Observe(app)
        provider = app.extensions["observe"].get(TracingSetup).provider
        def seen():
            span = provider.get_tracer("t").start_span("s")
            span.end()
            attrs = span.resource.attributes
            return attrs["process.pid"], attrs["service.instance.id"]
        parent = seen()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(write, json.dumps([os.getpid(), *seen()]).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        child = json.loads(os.read(read, 4096))
        print(json.dumps({"parent": [os.getpid(), *parent], "child": child}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    parent_pid, parent_span_pid, parent_instance = seen["parent"]
    child_pid, child_span_pid, child_instance = seen["child"]
    assert parent_span_pid == parent_pid
    assert child_span_pid == child_pid != parent_pid
    assert child_instance != parent_instance


def test_hooks_by_configuration_run_after_flask_observes_own(
    make_app: Callable[..., Flask], receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """The five hook keys as "module:attr" strings (the sample's own hooks): each one's
    attribute is on its span — server (request and response), requests client (request and
    answer), SQL — and the server span still has the correlation ID flask_observe put on it
    first."""
    from .conftest import LiveServer as Server

    hooks = "sample_app.tracing_hooks"
    app = db_app(
        traced(
            make_app,
            receiver,
            tracing_request_hook=f"{hooks}:on_request",
            tracing_response_hook=f"{hooks}:on_response",
            tracing_client_request_hook=f"{hooks}:on_call",
            tracing_client_response_hook=f"{hooks}:on_answer",
            tracing_query_hook=f"{hooks}:on_query",
        ),
        tmp_path,
    )
    upstream = Flask("upstream")
    upstream.add_url_rule("/v1/<platform>/users/<handle>", "user", lambda platform, handle: "{}")
    with Server(upstream) as other:

        @app.get("/fetch")
        def fetch() -> str:
            requests.get(f"{other.url}/v1/twitter/users/nasa", timeout=5)
            return "fetched"

        client = app.test_client()
        client.get("/fetch", headers={"X-Tenant": "acme", "X-Request-ID": "hook-1"})
        client.get("/rows")
    flush(app)
    spans = wait_for(lambda: len(receiver.spans()) >= 7 and receiver.spans(), 10)
    server = next(s for s in spans if s["name"] == "GET /fetch")
    assert server["attributes"]["app.tenant"] == "acme"
    assert server["attributes"]["correlation_id"] == "hook-1"
    assert server["attributes"]["http.response.header.content-type"] == ["text/html; charset=utf-8"]
    call = next(s for s in spans if s["kind"] == "CLIENT" and "url.full" in s["attributes"])
    assert call["attributes"]["app.platform"] == "twitter"
    assert call["attributes"]["http.response.body.size"] == 2
    insert = next(s for s in spans if s["name"] == "INSERT")
    assert insert["attributes"]["app.db.rowcount"] == 1


def test_hooks_by_the_api_are_guarded_and_removable(
    make_app: Callable[..., Flask],
    receiver: OtlpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TracingSetup.add_hook: a hook that raises is logged once a minute (not per request)
    and every request still answers 200 with its span; the next hook still runs; an
    unknown point is refused; remove_hook stops it."""
    app = traced(make_app, receiver)
    app.add_url_rule("/x", "x", lambda: "ok")
    with app.app_context():
        setup = Observe.handle(TracingSetup)
    seen: list[str] = []

    def broken(span: Any, environ: Any) -> None:
        raise RuntimeError("hook bug")

    setup.add_hook("request", broken)
    setup.add_hook("request", lambda span, environ: seen.append(environ["PATH_INFO"]))
    with pytest.raises(ValueError, match="unknown hook point"):
        setup.add_hook("teardown", broken)
    client = app.test_client()
    with caplog.at_level(logging.ERROR, "flask_observe"):
        statuses = [client.get("/x").status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert seen == ["/x"] * 5
    assert len([r for r in caplog.records if "tracing request hook" in r.getMessage()]) == 1
    setup.remove_hook("request", broken)
    flush(app)
    assert len(wait_for(lambda: len(receiver.spans()) >= 5 and receiver.spans(), 10)) == 5
