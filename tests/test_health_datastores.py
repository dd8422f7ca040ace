"""Database and Redis checks against the machine's PostgreSQL and Redis, and against faults:
a refused port, a listener that accepts and never answers, an exhausted app pool."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_observe import Observe
from flask_observe.health import (
    DatabaseCheck,
    HealthCheck,
    HealthRunner,
    RedisCheck,
    Status,
)

from .conftest import HungServer, assert_at_deadline, need_service, refused_port

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
def runner() -> Iterator[HealthRunner]:
    app = Flask("datastores")  # the runner holds its app weakly: keep it alive here
    runner = HealthRunner(app, cache_ttl=0)
    yield runner
    runner.close()


def timed(runner: HealthRunner) -> tuple[float, Status, str | None]:
    started = time.perf_counter()
    result = runner.run().results[0]
    return time.perf_counter() - started, result.status, result.output


def wait_thread_gone(name: str, timeout: float) -> float:
    """Seconds until no thread called ``name`` is left (or ``timeout``)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if not any(t.name == name for t in threading.enumerate()):
            break
        time.sleep(0.02)
    return time.perf_counter() - started


# -- SQLAlchemy database ------------------------------------------------------------------


@pytest.mark.services
def test_database_passes_on_postgresql(runner: HealthRunner) -> None:
    """SELECT 1 on the machine's PostgreSQL: pass, with the response time in ms."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    runner.add(DatabaseCheck("db", url=PG_URL, timeout=2))
    result = runner.run().results[0]
    assert result.status is Status.PASS, result.output
    obs = result.observations[0]
    assert (obs.measurement, obs.unit) == ("responseTime", "ms")
    assert obs.value > 0


def test_database_passes_on_sqlite(runner: HealthRunner, tmp_path: Path) -> None:
    """The same check on SQLite (the sample app's default)."""
    runner.add(DatabaseCheck("db", url=f"sqlite:///{tmp_path / 'x.db'}", timeout=1))
    assert runner.run().status is Status.PASS


@pytest.mark.realtime
def test_database_refused_port_fails_fast(runner: HealthRunner) -> None:
    """Nothing listening: fail well before the deadline, saying the connection was refused."""
    with refused_port() as port:
        runner.add(
            DatabaseCheck("db", url=f"postgresql+psycopg://u:pw@127.0.0.1:{port}/x", timeout=1.5)
        )
        elapsed, status, output = timed(runner)
    assert status is Status.FAIL
    assert elapsed <= 1.5 + 0.3
    assert output is not None
    assert "refused" in output


@pytest.mark.realtime
def test_database_hung_server_fails_at_the_deadline(runner: HealthRunner) -> None:
    """A server that accepts and never answers: fail at the deadline ± 0.3 s, 'timed out'."""
    with HungServer() as hung:
        runner.add(
            DatabaseCheck("db", url=f"postgresql+psycopg://u@127.0.0.1:{hung.port}/x", timeout=1)
        )
        elapsed, status, output = timed(runner)
        assert_at_deadline(elapsed, 1.0)
        assert (status, output) == (Status.FAIL, "timed out after 1s")
        # libpq's own connect timeout (2 s at least) ends the abandoned thread.
        assert wait_thread_gone("flask_observe-health-db", 5) < 5


@pytest.mark.realtime
@pytest.mark.services
def test_database_check_never_uses_the_apps_pool(runner: HealthRunner) -> None:
    """Every connection of the app's pool held by other threads: the check still passes
    within its deadline on its own connection, and reports the pool as exhausted (warn).
    A naive check borrowing from the app's pool fails at its deadline instead."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import sqlalchemy

    engine = sqlalchemy.create_engine(PG_URL, pool_size=2, max_overflow=0, pool_timeout=30)
    release = threading.Event()
    held = threading.Barrier(3)

    def hold() -> None:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            held.wait(5)
            release.wait(30)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for t in holders:
        t.start()
    held.wait(5)

    class NaiveCheck(HealthCheck):
        def run(self) -> None:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")

    try:
        runner.add(DatabaseCheck("db", engine=engine, timeout=1.5))
        runner.add(NaiveCheck("naive", timeout=1.0))
        started = time.perf_counter()
        db, naive = runner.run().results
        assert_at_deadline(time.perf_counter() - started, 1.0)
        assert db.status is Status.WARN
        latency, pool = db.observations
        assert latency.status is Status.PASS
        assert latency.value < 1500
        assert (pool.measurement, pool.value, pool.status) == ("connections", 2, Status.WARN)
        assert pool.extra == {"poolSize": 2, "poolCapacity": 2}
        assert naive.status is Status.FAIL
        assert naive.timed_out
    finally:
        release.set()
        for t in holders:
            t.join(5)
        engine.dispose()
    assert runner.run(fresh=True).results[0].status is Status.PASS


def test_database_url_never_in_repr() -> None:
    """The URL and the engine are repr=False fields; secrets() lists the password."""
    check = DatabaseCheck("db", url="postgresql://app:s3cr3t-pw@db/app")
    assert "s3cr3t-pw" not in repr(check)
    assert "s3cr3t-pw" in list(check.secrets())
    with pytest.raises(ValueError, match="engine= or url="):
        DatabaseCheck("db")


# -- Redis --------------------------------------------------------------------------------


@pytest.mark.services
def test_redis_passes(runner: HealthRunner) -> None:
    """PING on the machine's Redis (DB 13): pass with its response time."""
    need_service("Redis", "127.0.0.1", 6379)
    runner.add(RedisCheck("cache", url=REDIS_URL, timeout=1))
    result = runner.run().results[0]
    assert result.status is Status.PASS, result.output
    assert result.observations[0].measurement == "responseTime"


@pytest.mark.realtime
def test_redis_refused_port_fails_fast(runner: HealthRunner) -> None:
    """Refused: fail before the deadline, no retries, the password not shown."""
    with refused_port() as port:
        runner.add(RedisCheck("cache", url=f"redis://:r3dis-pw@127.0.0.1:{port}/0", timeout=1))
        elapsed, status, output = timed(runner)
    assert status is Status.FAIL
    assert elapsed < 1.0
    assert output is not None
    assert "ConnectionError" in output
    assert "r3dis-pw" not in output


@pytest.mark.realtime
def test_redis_hung_server_fails_at_the_deadline_and_does_not_retry(
    runner: HealthRunner,
) -> None:
    """Accepts, never answers: fail at the deadline ± 0.3 s; with retries off the client
    gives up at its own socket timeout, so the thread is gone soon after (redis-py's default
    retries would keep it for several timeouts)."""
    with HungServer() as hung:
        runner.add(RedisCheck("cache", url=f"redis://127.0.0.1:{hung.port}/0", timeout=0.8))
        elapsed, status, output = timed(runner)
        assert_at_deadline(elapsed, 0.8)
        assert (status, output) == (Status.FAIL, "timed out after 0.8s")
        assert wait_thread_gone("flask_observe-health-cache", 3) < 0.5
        assert hung.accepted == 1


def test_redis_going_down_and_back_is_two_logged_and_counted_transitions(
    make_app: Callable[..., Flask], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real redis-server killed then started again: the check goes pass -> fail -> pass,
    each change logged (check, statuses, duration, output) and counted in
    ``flask_observe_health_check_transitions_total``; runs that change nothing log nothing."""
    from .peers import PrivateRedis

    with PrivateRedis(tmp_path) as redis:
        app = make_app("transitions", log_stdout=False, health_cache_ttl=0)
        observe = Observe()
        observe.add_health_check(RedisCheck("cache", url=redis.url, timeout=1.0), app=app)
        runner = Observe.handle(HealthRunner, app)
        caplog.set_level(logging.INFO, "flask_observe.health")
        assert runner.run().status is Status.PASS
        redis.stop()
        assert runner.run().status is Status.FAIL
        assert runner.run().status is Status.FAIL
        redis.start()
        assert runner.run().status is Status.PASS
        lines = [r for r in caplog.records if r.name == "flask_observe.health"]
        assert [r.getMessage() for r in lines] == [
            "health check cache: pass -> fail",
            "health check cache: fail -> pass",
        ]
        assert lines[0].output  # type: ignore[attr-defined]  # what the driver said
        metrics = app.test_client().get("/metrics").get_data(as_text=True)
        for before, after in (("pass", "fail"), ("fail", "pass")):
            series = (
                'flask_observe_health_check_transitions_total{check="cache",'
                f'from_status="{before}",to_status="{after}"}} 1.0'
            )
            assert series in metrics
