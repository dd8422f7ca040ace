"""Alerting when what it depends on fails (issue 10): a database hung behind a proxy (one
incident, one firing and one resolve), the shared store (Redis) killed under gunicorn workers,
a channel throttled for an hour."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_observe._clock import ManualClock
from flask_observe.alerting import (
    Alert,
    AlertRouter,
    HealthRule,
    MemoryStore,
    RedisStore,
    RuleEngine,
    UrlPolicy,
    build_channels,
)
from flask_observe.alerting.settings import AlertingSettings
from flask_observe.alerting.setup import failing_checks
from flask_observe.health import DatabaseCheck, HealthRunner
from flask_observe.health.checks import Status

from .alert_sinks import HangingProxy, Sink, WatchedClock
from .conftest import need_service, read_json_lines
from .peers import PrivateRedis, wait_for
from .test_multiprocess import Gunicorn

POLICY = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))


def webhook(sink: Sink, path: str = "/h") -> list[Any]:
    return build_channels([{"type": "webhook", "url": sink.url + path}], POLICY, 2.0)


#: The default sample interval: how far the engine's clock moves between two evaluations.
INTERVAL = 15.0


@pytest.mark.realtime  # real PostgreSQL behind a real proxy; the check's deadline is real
@pytest.mark.services
def test_a_database_hung_behind_a_proxy_gives_one_firing_and_one_resolve() -> None:
    """PostgreSQL behind a proxy that hangs for 6 minutes, answers once, hangs 2 minutes more
    and recovers (the engine's and router's clock moves 15 s, the default sample interval,
    between evaluations; the check's 1 s deadline is real): the in-process HealthRule over
    a DatabaseCheck gives one firing and one resolve, not firing, resolved, firing, resolved.
    The resolve comes once the check has passed for the default
    OBSERVE_ALERT_RESOLVE_AFTER_SECONDS (60 s) in a row."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    resolve_after = AlertingSettings.__dataclass_fields__["alert_resolve_after_seconds"].default
    assert resolve_after == 60.0
    clock = ManualClock()
    with HangingProxy(("127.0.0.1", 5432)) as proxy, Sink() as sink:
        app = Flask("hung-db")  # the runner holds it weakly
        runner = HealthRunner(app, cache_ttl=0, default_timeout=1.0)
        url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/test"
        runner.add(DatabaseCheck("db", url=url, timeout=1.0))
        router = AlertRouter(webhook(sink), MemoryStore(clock), clock=clock)
        engine = RuleEngine(router, consecutive=3, resolve_after=resolve_after, clock=clock)
        engine.add(HealthRule(lambda: failing_checks(runner)))
        raised: list[tuple[float, str]] = []
        seen: list[Status] = []

        def evaluate(rounds: int) -> None:
            for _ in range(rounds):
                for alert in engine.evaluate():
                    if not raised or raised[-1][1] != alert.status:
                        raised.append((clock.monotonic(), alert.status))
                seen.append(runner.latest()["db"].status)
                assert router.flush(5)  # decided at this evaluation's time
                clock.advance(INTERVAL)

        def recovered() -> bool:
            return runner.run().results[0].status is Status.PASS

        try:
            assert wait_for(recovered, 10)  # the first run also imports the driver
            evaluate(2)
            assert seen == [Status.PASS, Status.PASS]
            proxy.hang()
            evaluate(24)  # 6 minutes hung
            assert "timed out" in (runner.latest()["db"].output or "")
            proxy.release()  # the database answers once in the middle of the outage
            assert wait_for(recovered, 10)
            evaluate(1)
            assert seen[-1] is Status.PASS
            proxy.hang()
            evaluate(8)  # 2 more minutes hung
            assert seen[-1] is Status.FAIL
            proxy.release()
            assert wait_for(recovered, 10)
            evaluate(10)  # recovered for good: 150 s of passing evaluations
            assert seen[-10:] == [Status.PASS] * 10
            assert router.flush(5)
        finally:
            router.close()
            runner.close()
    statuses = [body["status"] for _, _, body in sink.received]
    assert statuses == ["firing", "resolved"], statuses
    # Fired at the 3rd failing evaluation; resolved 60 s after the final recovery's first
    # passing evaluation (at 2 + 24 + 1 + 8 = 35 evaluations, i.e. 525 s).
    assert raised == [(60.0, "firing"), (525.0 + resolve_after, "resolved")], raised


# -- the shared store (Redis) down -------------------------------------------------------------

UNREACHABLE = "alert state store unreachable"
BACK = "alert state store reachable again"


@pytest.mark.realtime  # a real redis-server, killed and restarted
def test_redis_store_dedups_in_each_process_while_redis_is_down_and_resolves_once_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three processes' stores share a private Redis. It is killed mid-incident: the store
    that notified stays quiet, each other notifies once (its own dedup and cooldown), nobody
    waits on Redis until its retry interval has passed on the store's clock. It comes back
    empty: the incidents notified meanwhile are handed back, so the firing stays deduplicated
    and exactly one resolve goes out, also for a store that comes back only after another
    resolved. Each store says once that Redis is unreachable and once that it is back."""
    clock = ManualClock()
    firing = ("fp-db", "DatabaseDown", True, 3600.0, 300.0)
    resolved = ("fp-db", "DatabaseDown", False, 3600.0, 300.0)
    with PrivateRedis(tmp_path / "redis") as server:
        a, b, c = (
            RedisStore(server.url, "t", timeout=0.5, retry_interval=5.0, clock=clock)
            for _ in range(3)
        )
        with caplog.at_level(logging.INFO, logger="flask_observe.alerting"):
            assert [a.decide(*firing), b.decide(*firing), c.decide(*firing)] == [
                True,
                False,
                False,
            ]
            server.kill()
            assert a.decide(*firing) is False  # it notified this incident itself
            assert [b.decide(*firing) for _ in range(3)] == [True, False, False]
            assert [c.decide(*firing) for _ in range(3)] == [True, False, False]
            assert (a.degraded, b.degraded, c.degraded) == (True, True, True)
            server.start()  # back, empty
            clock.advance(4.9)
            assert b.decide(*firing) is False
            assert b.degraded  # not tried again before its retry interval
            clock.advance(0.1)
            assert [a.decide(*firing), b.decide(*firing)] == [False, False]  # handed back
            assert (a.degraded, b.degraded) == (False, False)
            assert [b.decide(*resolved), a.decide(*resolved)] == [True, False]
            assert c.decide(*resolved) is False  # back only now: resolved by b already
            assert not c.degraded
            for store in (a, b, c):
                store.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith(UNREACHABLE) for m in messages) == 3, messages
    assert sum(m.startswith(BACK) for m in messages) == 3, messages
    assert (a.degradations, b.degradations, c.degradations) == (1, 1, 1)


@pytest.mark.realtime  # a real redis-server, paused; its client's timeout is on the wall clock
def test_an_incident_resolved_while_redis_was_away_is_closed_in_redis_when_it_is_back(
    tmp_path: Path,
) -> None:
    """Redis cut off but keeping its data (a partition, not a restart: a proxy in front of it
    closes every connection): an incident notified through it resolves meanwhile in the
    process that notified it. When Redis is reachable again that resolve is handed to it, so
    a new incident of the same alert is notified instead of being taken for the old one
    (still 'sent' there, its dedup window running), and resolved once."""
    clock = ManualClock()
    firing = ("fp-q", "QueueStuck", True, 3600.0, 0.0)
    resolved = ("fp-q", "QueueStuck", False, 3600.0, 0.0)
    with (
        PrivateRedis(tmp_path / "redis") as server,
        HangingProxy(("127.0.0.1", server.port)) as cut,
    ):
        url = f"redis://127.0.0.1:{cut.port}/0"
        store = RedisStore(url, "t", timeout=0.5, retry_interval=5.0, clock=clock)
        other = RedisStore(server.url, "t", timeout=0.5, retry_interval=5.0, clock=clock)
        assert store.decide(*firing) is True
        cut.cut()
        assert store.decide(*resolved) is True  # it notified the firing: it resolves
        assert store.degraded
        assert other.decide(*firing) is False  # in Redis the old incident is still open
        cut.release()
        clock.advance(5.0)
        assert store.decide(*firing) is True  # the resolve handed over: a new incident
        assert not store.degraded
        assert other.decide(*firing) is False
        assert [other.decide(*resolved), store.decide(*resolved)] == [True, False]
        store.close()
        other.close()


@pytest.mark.realtime  # a real redis-server, paused; its client's timeout is on the wall clock
def test_a_hung_redis_costs_one_timeout_per_retry_interval(tmp_path: Path) -> None:
    """Redis paused (accepts, never answers): the first decision waits for the client's
    timeout, then falls back; the next ones within the retry interval do not wait at all."""
    clock = ManualClock()
    with PrivateRedis(tmp_path / "redis") as server:
        store = RedisStore(server.url, "t", timeout=0.5, retry_interval=5.0, clock=clock)
        assert store.decide("fp", "Hung", True, 3600, 300) is True
        server.pause()
        try:
            started = time.monotonic()
            assert store.decide("fp2", "Other", True, 3600, 300) is True  # decided here
            first = time.monotonic() - started
            started = time.monotonic()
            assert store.decide("fp2", "Other", True, 3600, 300) is False
            second = time.monotonic() - started
        finally:
            server.resume()
        store.close()
    assert 0.4 <= first <= 1.5, first
    assert second < 0.1, second


def _gunicorn_env(run: Path, sink: Sink, redis_url: str) -> dict[str, str]:
    return {
        "ALERT_TEST_FLAG": str(run / "flag"),
        "FLASK_OBSERVE_LOG_STDOUT": "false",
        "FLASK_OBSERVE_LOG_DIR": str(run / "logs"),
        "FLASK_OBSERVE_SAMPLE_INTERVAL_SECONDS": "0.1",
        "FLASK_OBSERVE_ALERT_CHANNELS": json.dumps(
            [{"type": "webhook", "url": f"{sink.url}/{run.name}"}]
        ),
        "FLASK_OBSERVE_ALERT_ALLOW_HTTP": "true",
        "FLASK_OBSERVE_ALERT_ALLOW_HOSTS": "127.0.0.1",
        "FLASK_OBSERVE_ALERT_REDIS_URL": redis_url,
        "FLASK_OBSERVE_ALERT_REDIS_PREFIX": f"test-{uuid.uuid4().hex}",
        "FLASK_OBSERVE_ALERT_REDIS_RETRY_SECONDS": "0.5",
        "FLASK_OBSERVE_ALERT_COOLDOWN_SECONDS": "60",
        "FLASK_OBSERVE_ALERT_RULES_CONSECUTIVE": "1",
        "FLASK_OBSERVE_ALERT_RESOLVE_AFTER_SECONDS": "0",
    }


WORKERS = 4
_PID = re.compile(r"incident seen by pid (\d+)")


def _incident_with_redis_killed(run: Path, sink: Sink) -> dict[str, Any]:
    """One incident under 4 fresh gunicorn workers, its private Redis killed for 2 s in the
    middle; what reached the receiver and the workers' logs."""
    run.mkdir()

    def received(status: str) -> list[Any]:
        return [b for _, p, b in list(sink.received) if p == run.name and b["status"] == status]

    seen: dict[str, Any] = {}
    with PrivateRedis(run / "redis") as redis_server:
        env = _gunicorn_env(run, sink, redis_server.url)
        server = Gunicorn(run, "tests.apps.alerting_app:app", "--workers", str(WORKERS), env=env)
        try:
            assert wait_for(lambda: len(list(run.glob("worker-*"))) == WORKERS, 30)
            (run / "flag").touch()  # the incident starts
            assert wait_for(lambda: received("firing"), 10)
            time.sleep(0.5)  # every worker evaluates it 5 more times, Redis up
            seen["before"] = len(received("firing"))
            redis_server.kill()
            time.sleep(2.0)  # the outage: ~20 evaluations per worker
            seen["during"] = len(received("firing"))
            redis_server.start()  # back, empty
            time.sleep(1.5)  # retried after 0.5 s and handed back; still evaluating
            seen["after"] = len(received("firing"))
            (run / "flag").unlink()  # the incident ends
            assert wait_for(lambda: received("resolved"), 10)
            time.sleep(1.0)  # every worker has evaluated the end ~10 times
        finally:
            server.stop()
    seen["firings"] = received("firing")
    seen["resolved"] = received("resolved")
    seen["logs"] = [
        line["message"] for f in (run / "logs").glob("*.log") for line in read_json_lines(f)
    ]
    return seen


@pytest.mark.realtime  # real gunicorn workers and a real redis-server, killed mid-incident
def test_redis_killed_mid_incident_under_four_gunicorn_workers(tmp_path: Path) -> None:
    """Three incidents, each under 4 fresh gunicorn workers sharing a private Redis: the
    incident is notified once; Redis is killed for 2 s while every worker keeps evaluating
    (10 times a second) and restarted empty. Each worker notifies at most once within the
    cooldown (60 s: the whole run), nothing more goes out after the recovery, and exactly one
    resolve goes out when the incident ends. Each worker logs the degradation once and the
    recovery once."""
    with Sink() as sink:
        for number in range(3):
            seen = _incident_with_redis_killed(tmp_path / f"run{number}", sink)
            firings = seen["firings"]
            per_worker = Counter(_PID.findall(" ".join(b["summary"] for b in firings)))
            assert seen["before"] == 1, (number, seen)
            assert max(per_worker.values()) == 1, (number, per_worker)
            assert len(firings) <= WORKERS, (number, len(firings))
            assert seen["after"] == seen["during"], (number, seen)  # none after the recovery
            assert len(seen["resolved"]) == 1, (number, seen["resolved"])
            logs = seen["logs"]
            assert sum(m.startswith(UNREACHABLE) for m in logs) == WORKERS, (number, logs)
            assert sum(m.startswith(BACK) for m in logs) == WORKERS, (number, logs)


# -- a channel throttled for an hour ----------------------------------------------------------

THROTTLED = 20_000


def _severity(n: int) -> str:
    return "critical" if n == 12_345 else "error" if n % 1000 == 0 else "warning"


@pytest.mark.realtime
def test_a_channel_throttled_for_an_hour_holds_a_bounded_number_then_sends_one_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """20,000 alerts (one critical, 20 errors, the rest warnings) to a real receiver answering
    429 Retry-After: 3600: it is called once; at most OBSERVE_ALERT_HOLD_SIZE (100) alerts are
    held, the most important ones, the rest counted on the router and logged (a few lines, not
    one per alert). An hour later on the router's clock the receiver, open again, gets one
    summary ("20000 alerts held while the channel was throttled: [CRITICAL] …"), not the
    backlog."""
    hold_size = AlertingSettings.__dataclass_fields__["alert_hold_size"].default
    assert hold_size == 100
    clock = WatchedClock()
    state = {"open": False}

    def answer(n: int) -> tuple[int, dict[str, str]]:
        return (200, {}) if state["open"] else (429, {"Retry-After": "3600"})

    with Sink(answer) as sink:
        router = AlertRouter(webhook(sink), clock=clock, queue_size=THROTTLED, hold_size=hold_size)
        with caplog.at_level(logging.INFO, logger="flask_observe.alerting"):
            for n in range(THROTTLED):
                assert router.notify(Alert(f"Alert{n}", _severity(n), f"problem {n}"))
            assert router.flush(60)  # every alert decided; the held ones wait for the channel
            assert len(sink.received) == 1  # the 429; nobody called it again
            assert router.held() == {"webhook-0": hold_size}
            assert router.held_dropped == {"webhook-0": THROTTLED - hold_size}
            state["open"] = True
            clock.advance(3599)
            clock.settle()
            assert len(sink.received) == 1
            clock.advance(1)
            assert wait_for(lambda: len(sink.received) == 2, 10)
            assert router.flush(5)  # and nothing is held or scheduled any more
        router.close()
    assert len(sink.received) == 2, [b["name"] for _, _, b in sink.received[:5]]
    summary = sink.received[1][2]
    assert summary["name"] == "FlaskObserveHeldAlerts"
    assert summary["severity"] == "critical"
    assert summary["summary"] == (
        "20000 alerts held while the channel was throttled: [CRITICAL] Alert12345,"
        " [ERROR] Alert0, [ERROR] Alert1000 and 19997 more"
    )
    lines = summary["description"].splitlines()
    assert lines[0] == "1 critical, 20 error, 19979 warning"
    assert lines[2] == "[CRITICAL] Alert12345: problem 12345"
    assert lines[-1] == (
        "19900 not kept: at most 100 alerts are held per channel, the least important were dropped"
    )
    assert router.held() == {}
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    dropped = [r for r in warnings if r.getMessage().startswith("alert dropped")]
    assert len(dropped) == 1  # once per minute of the router's clock, with the count
    assert len(warnings) <= 5, [r.getMessage() for r in warnings]
