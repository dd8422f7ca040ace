"""Alerting when what it depends on fails (issue 10): a database hung behind a proxy (one
incident, one firing and one resolve), the shared store (Redis) killed under gunicorn workers,
a channel throttled for an hour."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_observe._clock import ManualClock
from flask_observe.alerting import (
    AlertRouter,
    HealthRule,
    MemoryStore,
    RuleEngine,
    UrlPolicy,
    build_channels,
)
from flask_observe.alerting.settings import AlertingSettings
from flask_observe.alerting.setup import failing_checks
from flask_observe.health import DatabaseCheck, HealthRunner
from flask_observe.health.checks import Status

from .alert_sinks import HangingProxy, Sink
from .conftest import need_service
from .peers import wait_for

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
