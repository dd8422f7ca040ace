"""Celery and HTTP checks against a real worker (Redis broker) and real HTTP servers, and
against faults: a stopped worker, a refused port, a listener that never answers."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_observe.health import CeleryCheck, HealthRunner, HttpCheck, Status

from .conftest import HungServer, LiveServer, assert_at_deadline, need_service, refused_port
from .peers import celery_worker, stop_process

ROOT = Path(__file__).resolve().parent.parent
BROKER = "redis://127.0.0.1:6379/14"


@pytest.fixture
def app() -> Flask:
    return Flask("services")


@pytest.fixture
def runner(app: Flask) -> Iterator[HealthRunner]:
    runner = HealthRunner(app, cache_ttl=0)
    yield runner
    runner.close()


def timed(runner: HealthRunner) -> tuple[float, Status, str | None]:
    started = time.perf_counter()
    result = runner.run().results[0]
    return time.perf_counter() - started, result.status, result.output


def celery_app(broker: str) -> object:
    from celery import Celery

    return Celery("health-test", broker=broker, set_as_current=False)


# -- Celery -------------------------------------------------------------------------------


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker (solo pool) on Redis DB 14 with a queue of its own."""
    need_service("Redis", "127.0.0.1", 6379)
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        OBSERVE_TEST_BROKER=BROKER,
        OBSERVE_TEST_LOG_DIR=str(tmp_path / "logs"),
        OBSERVE_TEST_QUEUE=f"health-{uuid.uuid4().hex[:8]}",
    )
    with celery_worker(
        "tests.apps.celery_worker_app:celery",
        pool="solo",
        env=env,
        cwd=tmp_path,
        name=f"health-{uuid.uuid4().hex[:6]}@%h",
    ) as proc:
        yield proc


@pytest.mark.realtime
@pytest.mark.services
def test_celery_worker_answers_then_a_stopped_worker_fails_at_the_deadline(
    runner: HealthRunner, worker: subprocess.Popen[bytes]
) -> None:
    """Pass while the worker runs (broker reachable, one pong); once it is stopped the ping
    gets no answer and the check fails at its deadline ± 0.3 s."""
    runner.add(CeleryCheck("workers", celery=celery_app(BROKER), timeout=1.5))
    deadline = time.monotonic() + 60
    result = runner.run().results[0]
    while result.status is not Status.PASS and time.monotonic() < deadline:
        assert worker.poll() is None, worker.stdout.read().decode()  # type: ignore[union-attr]
        time.sleep(0.5)
        result = runner.run().results[0]
    assert result.status is Status.PASS, result.output
    by_key = {o.measurement: o for o in result.observations}
    assert by_key["workers"].value == 1
    # limit=min_workers: the ping returns on the first pong, not at its timeout.
    assert by_key["responseTime"].value < 1000

    stop_process(worker)
    elapsed, status, output = timed(runner)
    assert status is Status.FAIL
    assert_at_deadline(elapsed, 1.5)
    # Normally the check's own verdict; on a loaded machine the deadline may come first.
    assert output is not None
    assert "0 worker(s) answered" in output or output == "timed out after 1.5s"


@pytest.mark.realtime
@pytest.mark.services
def test_celery_broker_refused_fails_fast(runner: HealthRunner) -> None:
    """Broker port refused: fail before the deadline, 'broker unreachable'."""
    with refused_port() as port:
        runner.add(
            CeleryCheck("workers", celery=celery_app(f"redis://127.0.0.1:{port}/0"), timeout=1.5)
        )
        elapsed, status, output = timed(runner)
    assert status is Status.FAIL
    assert output is not None
    assert output.startswith("broker unreachable")
    assert elapsed <= 1.5 + 0.3


@pytest.mark.realtime
def test_celery_broker_hung_fails_at_the_deadline(runner: HealthRunner) -> None:
    """A broker that accepts and never answers: fail at the deadline ± 0.3 s."""
    with HungServer() as hung:
        runner.add(
            CeleryCheck(
                "workers", celery=celery_app(f"redis://127.0.0.1:{hung.port}/0"), timeout=1.0
            )
        )
        elapsed, status, _ = timed(runner)
    assert status is Status.FAIL
    assert_at_deadline(elapsed, 1.0)


def test_celery_check_uses_the_apps_celery_extension(runner: HealthRunner, app: Flask) -> None:
    """Without celery=, the check uses app.extensions['celery']; none there: a clear fail."""
    runner.add(CeleryCheck("workers", timeout=0.5))
    assert runner.run().results[0].output == (
        "no Celery app (pass celery= or set app.extensions['celery'])"
    )


# -- HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[LiveServer]:
    """A real HTTP dependency: /ok, /broken (500), /slow (0.3 s)."""
    dep = Flask("upstream")
    seen: list[str] = []

    @dep.get("/ok")
    def ok() -> str:
        from flask import request

        seen.append(request.headers.get("X-Api-Key", ""))
        return "fine"

    @dep.get("/broken")
    def broken() -> tuple[str, int]:
        return "no", 500

    @dep.get("/slow")
    def slow() -> str:
        time.sleep(0.3)
        return "late"

    with LiveServer(dep) as server:
        server.seen = seen  # type: ignore[attr-defined]
        yield server


def test_http_dependency_pass_fail_and_warn(runner: HealthRunner, upstream: LiveServer) -> None:
    """200 passes with its latency; 500 fails; above warn_latency_ms warns; headers are sent."""
    runner.add(HttpCheck("ok", url=f"{upstream.url}/ok", headers={"X-Api-Key": "k-123"}))
    runner.add(HttpCheck("broken", url=f"{upstream.url}/broken", critical=False))
    runner.add(HttpCheck("slow", url=f"{upstream.url}/slow", warn_latency_ms=100, timeout=2))
    ok, broken, slow = runner.run().results
    assert ok.status is Status.PASS
    assert ok.observations[0].unit == "ms"
    assert ok.observations[0].extra == {"httpStatus": 200}
    assert upstream.seen == ["k-123"]  # type: ignore[attr-defined]
    assert (broken.status, broken.output) == (Status.FAIL, "answered HTTP 500")
    assert slow.status is Status.WARN
    assert slow.observations[0].value >= 300


def test_http_expected_status(runner: HealthRunner, upstream: LiveServer) -> None:
    """expected_status narrows what passes."""
    runner.add(HttpCheck("strict", url=f"{upstream.url}/ok", expected_status=(204,)))
    assert runner.run().results[0].output == "answered HTTP 200"


@pytest.mark.realtime
def test_http_refused_fails_fast_and_hung_fails_at_the_deadline(runner: HealthRunner) -> None:
    """Refused: immediate failure. Accepts but never answers: failure at the deadline ± 0.3 s."""
    with refused_port() as port:
        runner.add(HttpCheck("api", url=f"http://127.0.0.1:{port}/", timeout=1))
        elapsed, status, output = timed(runner)
    assert status is Status.FAIL
    assert elapsed < 1.0
    assert output is not None
    assert "ConnectionRefusedError" in output
    runner.remove("api")
    with HungServer() as hung:
        runner.add(HttpCheck("api", url=f"http://127.0.0.1:{hung.port}/", timeout=1))
        elapsed, status, output = timed(runner)
    assert status is Status.FAIL
    assert_at_deadline(elapsed, 1.0)


def test_http_check_refuses_non_http_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpCheck("x", url="ftp://example.com/")
