"""The health blueprint over HTTP: codes, media type, who sees what, and liveness under a hang."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import pytest
import requests
from flask import Flask

from flask_observe import Observe
from flask_observe.health import (
    CheckFailed,
    CheckWarning,
    DatabaseCheck,
    HealthRunner,
    HttpCheck,
    RedisCheck,
)
from flask_observe.state import current_state

from .conftest import HungServer, LiveServer, refused_port

TOKEN = "health-KZgifD5_GPu5FU6ZW1r4tHxG"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def health_app(make_app: Callable[..., Flask], **config: object) -> tuple[Flask, Observe]:
    config.setdefault("log_stdout", False)
    config.setdefault("auth_token", TOKEN)
    app = make_app("healthapp", **config)
    return app, Observe()


def test_endpoints_answer_health_json_with_the_right_codes(
    make_app: Callable[..., Flask],
) -> None:
    """live/ready/startup/full exist; 200 for pass and warn, 503 for fail; the media type is
    application/health+json; liveness runs no readiness check."""
    app, observe = health_app(make_app)
    calls: list[str] = []
    state = {"mode": "pass"}

    @observe.health_check("dep", app=app, cache_ttl=0)
    def dep() -> None:
        calls.append("dep")
        if state["mode"] == "warn":
            raise CheckWarning("slow")
        if state["mode"] == "fail":
            raise CheckFailed("down")

    client = app.test_client()
    live = client.get("/health/live")
    assert (live.status_code, live.content_type, live.json) == (
        200,
        "application/health+json",
        {"status": "pass"},
    )
    assert calls == []
    for path in ("/health/ready", "/health", "/health/"):
        assert client.get(path).status_code == 200
    assert client.get("/health/startup").json == {"status": "pass"}
    state["mode"] = "warn"
    assert (client.get("/health/ready").status_code, client.get("/health").json) == (
        200,
        {"status": "warn"},
    )
    state["mode"] = "fail"
    ready = client.get("/health/ready")
    assert (ready.status_code, ready.json) == (503, {"status": "fail"})
    assert client.get("/health/live").status_code == 200
    assert client.head("/health/ready").status_code == 503
    assert ready.headers["Vary"] == "Authorization, Cookie"
    assert ready.headers["Cache-Control"] == "public, max-age=0, must-revalidate"


def test_cache_control_says_how_long_the_answer_stays_true(make_app: Callable[..., Flask]) -> None:
    """``max-age`` is the time every result in the answer stays fresh in the server's cache
    (rounded down): a check cached for an hour gives up to 3599 s; an answer with a result
    read live (no checks at all, a check with ``cache_ttl=0``) gives 0. Always
    ``must-revalidate`` (never served stale), ``private`` with details."""
    app, observe = health_app(make_app)

    @observe.health_check("slow-to-change", app=app, cache_ttl=3600)
    def slow_to_change() -> None:
        return None

    client = app.test_client()

    def max_age(path: str, **kw: object) -> tuple[str, int]:
        value = client.get(path, **kw).headers["Cache-Control"]  # type: ignore[arg-type]
        visibility, age, revalidate = value.split(", ")
        assert revalidate == "must-revalidate"
        return visibility, int(age.removeprefix("max-age="))

    visibility, first = max_age("/health/ready")
    assert visibility == "public"
    assert 3590 <= first <= 3599
    assert max_age("/health/live") == ("public", 0)  # no checks: nothing to reuse
    assert max_age("/health/ready", headers=AUTH)[0] == "private"

    @observe.health_check("read-live", app=app, cache_ttl=0)
    def read_live() -> None:
        return None

    assert max_age("/health/ready")[1] == 0  # a result read at each request


def test_details_need_credentials(make_app: Callable[..., Flask]) -> None:
    """No token: status only (not 401, probes carry none). Token: the checks. Wrong: status."""
    app, observe = health_app(make_app)
    observe.add_health_check(HttpCheck("api", url="http://127.0.0.1:9/", timeout=0.5), app=app)
    client = app.test_client()
    anonymous = client.get("/health")
    assert set(anonymous.json) == {"status"}
    assert set(client.get("/health", headers={"Authorization": "Bearer nope"}).json) == {"status"}
    detailed = client.get("/health", headers=AUTH)
    assert "api:responseTime" in detailed.json["checks"]
    assert detailed.json["serviceId"] == "healthapp"
    assert detailed.headers["Cache-Control"].startswith("private")
    assert "score" in detailed.json["checks"]
    assert "score" not in client.get("/health/ready", headers=AUTH).json["checks"]


def test_public_details_and_url_prefix_are_configurable(make_app: Callable[..., Flask]) -> None:
    """OBSERVE_HEALTH_PUBLIC_DETAILS shows details to all; the prefix moves every route."""
    app, _ = health_app(make_app, health_public_details=True, health_url_prefix="/_status/")
    client = app.test_client()
    assert client.get("/health/live").status_code == 404
    assert client.get("/_status/live").status_code == 200
    assert "checks" in client.get("/_status").json


def test_health_off_mounts_nothing_and_registering_is_harmless(
    make_app: Callable[..., Flask],
) -> None:
    """OBSERVE_HEALTH_ENABLED=False: no routes, no state, add_health_check does not fail."""
    app, observe = health_app(make_app, health_enabled=False)
    observe.add_health_check(HttpCheck("api", url="http://127.0.0.1:9/"), app=app)
    assert current_state(app).get(HealthRunner) is None
    assert app.test_client().get("/health/live").status_code == 404


def test_checks_kept_before_init_go_to_each_app(make_app: Callable[..., Flask]) -> None:
    """A check declared outside any app context is copied into each app initialised later;
    afterwards it must name its app."""
    observe = Observe()

    @observe.health_check("shared", critical=False)
    def shared() -> None:
        return None

    one, two = Flask("one"), Flask("two")
    for app in (one, two):
        app.config["OBSERVE_LOG_STDOUT"] = False
        observe.init_app(app)
    try:
        one_check = current_state(one).get(HealthRunner).get("shared")  # type: ignore[union-attr]
        two_check = current_state(two).get(HealthRunner).get("shared")  # type: ignore[union-attr]
        assert one_check is not None
        assert two_check is not None
        assert one_check is not two_check
        with pytest.raises(RuntimeError, match="pass app="):
            observe.add_health_check(one_check)
    finally:
        observe.shutdown(one)
        observe.shutdown(two)


def test_startup_waits_for_the_host(make_app: Callable[..., Flask]) -> None:
    """With OBSERVE_HEALTH_WAIT_FOR_STARTUP, startup and readiness are 503 until
    observe.startup_complete(app); liveness is 200 throughout."""
    app, observe = health_app(make_app, health_wait_for_startup=True)
    client = app.test_client()
    assert client.get("/health/startup").status_code == 503
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health/live").status_code == 200
    observe.startup_complete(app)
    assert client.get("/health/startup").status_code == 200
    assert client.get("/health/ready").status_code == 200


def test_nothing_secret_in_any_output(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """DSNs and URLs with passwords, API-key headers and query tokens never appear: not in
    the detailed document, not in the CLI's output, not in the log."""
    app, observe = health_app(make_app)
    with refused_port() as port:
        secrets = ["pg-Pa55word", "redis-Pa55word", "api-key-Secret", "query-Secret"]
        observe.add_health_check(
            DatabaseCheck(
                "db", url=f"postgresql+psycopg://scraper:pg-Pa55word@127.0.0.1:{port}/app"
            ),
            app=app,
        )
        observe.add_health_check(
            RedisCheck("cache", url=f"redis://:redis-Pa55word@127.0.0.1:{port}/0"), app=app
        )
        observe.add_health_check(
            HttpCheck(
                "api",
                url=f"http://user:api-key-Secret@127.0.0.1:{port}/v1?token=query-Secret",
                headers={"X-Api-Key": "api-key-Secret"},
            ),
            app=app,
        )
        with caplog.at_level("DEBUG"):
            body = app.test_client().get("/health", headers=AUTH).get_data(as_text=True)
            cli = app.test_cli_runner().invoke(args=["observe", "health"])
    assert '"status":"fail"' in body
    assert "refused" in body
    assert cli.exit_code == 1
    checks = repr(current_state(app).get(HealthRunner).checks)  # type: ignore[union-attr]
    for text in (body, cli.output, checks, caplog.text):
        for secret in secrets:
            assert secret not in text, (secret, text)
        assert f"scraper:pg-Pa55word@127.0.0.1:{port}" not in text


@pytest.mark.realtime
def test_liveness_stays_fast_while_the_database_hangs(make_app: Callable[..., Flask]) -> None:
    """A database that accepts and never answers: readiness fails at its deadline, while 400
    liveness probes over real HTTP all answer 200 quickly (p99 printed; bound generous)."""
    app, observe = health_app(make_app, health_cache_ttl=0)
    with HungServer() as hung:
        observe.add_health_check(
            DatabaseCheck("db", url=f"postgresql+psycopg://postgres@127.0.0.1:{hung.port}/test"),
            app=app,
        )
        current_state(app).get(HealthRunner).get("db").timeout = 1.0  # type: ignore[union-attr]
        stop = threading.Event()
        ready_codes: list[int] = []
        ready_times: list[float] = []
        with LiveServer(app) as server:

            def hammer_ready() -> None:
                with requests.Session() as session:
                    while not stop.is_set():
                        started = time.perf_counter()
                        code = session.get(f"{server.url}/health/ready", timeout=10).status_code
                        ready_times.append(time.perf_counter() - started)
                        ready_codes.append(code)

            hammers = [threading.Thread(target=hammer_ready) for _ in range(4)]
            for t in hammers:
                t.start()
            latencies = []
            with requests.Session() as session:
                time.sleep(0.1)
                for _ in range(400):
                    started = time.perf_counter()
                    response = session.get(f"{server.url}/health/live", timeout=5)
                    latencies.append(time.perf_counter() - started)
                    assert response.status_code == 200
            stop.set()
            for t in hammers:
                t.join(10)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"\nliveness while the DB hangs: p50 {p50:.2f} ms, p99 {p99:.2f} ms, n=400")
    assert p99 < 250, p99
    assert ready_codes
    assert set(ready_codes) == {503}
    assert max(ready_times) < 1.0 + 0.3
