"""Alert and health history: incidents fired and resolved with each channel's outcome (from
the alert router's listener, over real webhook receivers), and each check's transitions as
the host sees them, bounded."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from flask_observe._clock import ManualClock
from flask_observe.alerting import Alert, AlertRouter, UrlPolicy, build_channels
from flask_observe.console.history import MAX_TEXT, History
from flask_observe.console.store import ConsoleDB
from flask_observe.health.checks import CheckFailed, HealthCheck, Status
from flask_observe.health.runner import HealthRunner

from .alert_sinks import Sink, WatchedClock

POLICY = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))


def _router(urls: list[str], clock: ManualClock, **options: object) -> AlertRouter:
    channels = build_channels(
        [{"type": "webhook", "url": url, "name": f"hook{i}"} for i, url in enumerate(urls)],
        POLICY,
        2.0,
    )
    return AlertRouter(channels, clock=clock, **options)  # type: ignore[arg-type]


def _wait(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_incident_is_fired_then_resolved_with_each_channels_outcome(tmp_path: Path) -> None:
    """One receiver takes the alert, the other answers 500 three times: the incident lists a
    ``sent`` for the first and ``retrying`` twice then ``failed`` for the second."""
    clock = WatchedClock()
    history = History(ConsoleDB(tmp_path), clock=clock)
    with Sink() as good, Sink(lambda n: (500, {})) as bad:
        router = _router([good.url + "/ok", bad.url + "/bad"], clock, backoff=(0.0, 0.0))
        router.add_listener(history.on_alert)
        router.notify(Alert("DiskFull", "critical", summary="disk <b>full</b>"))
        good.wait_for(1)
        bad.wait_for(3)
        assert router.flush(5)
        clock.advance(30)
        router.notify(Alert("DiskFull", "critical", summary="back", status="resolved"))
        good.wait_for(2)
        bad.wait_for(6)
        assert router.flush(5)
        router.close()
    history.flush()
    (entry,) = history.alerts()
    assert (entry.name, entry.status, entry.summary) == ("DiskFull", "resolved", "disk <b>full</b>")
    assert entry.resolved_at is not None
    assert entry.resolved_at - entry.fired_at == 30
    assert entry.resolved_summary == "back"
    outcomes = [(n.status, n.channel, n.outcome) for n in entry.notifications]
    for status in ("firing", "resolved"):
        assert (status, "hook0", "sent") in outcomes
        mine = [o for s, c, o in outcomes if s == status and c == "hook1"]
        assert mine == ["retrying", "retrying", "failed"]
    failed = next(n for n in entry.notifications if n.outcome == "failed")
    assert "500" in failed.detail


def test_suppressed_repeats_are_counted_and_a_new_firing_opens_a_new_incident(
    tmp_path: Path,
) -> None:
    clock = WatchedClock()
    history = History(ConsoleDB(tmp_path), clock=clock)
    with Sink() as sink:
        router = _router([sink.url + "/ok"], clock)
        router.add_listener(history.on_alert)
        for _ in range(4):  # the rule engine raises a firing alert every round
            router.notify(Alert("Slow", "warning", summary="p95 high"))
        assert router.flush(5)
        router.notify(Alert("Slow", "warning", status="resolved"))
        assert router.flush(5)
        clock.advance(4000)  # past dedup and cooldown
        router.notify(Alert("Slow", "warning", summary="p95 high again"))
        assert router.flush(5)
        router.close()
    history.flush()
    second, first = history.alerts()
    assert first.status == "resolved"
    assert first.suppressed == 3
    assert second.status == "firing"
    assert second.summary == "p95 high again"
    assert [a.name for a in history.alerts(firing_only=True)] == ["Slow"]


def test_several_workers_share_one_open_incident(tmp_path: Path) -> None:
    """Two workers (two histories on one file) firing the same condition: one incident."""
    clock = ManualClock()
    workers = [History(ConsoleDB(tmp_path), clock=clock) for _ in range(2)]
    alert = Alert("HighErrorRate", service="scraper")
    for history in workers:
        history.on_alert("queued", alert, None, "")
        history.on_alert("sent", alert, "slack", "")
        history.flush()
    (entry,) = workers[0].alerts()
    assert [n.channel for n in entry.notifications] == ["slack", "slack"]
    workers[1].on_alert(
        "queued", Alert("HighErrorRate", service="scraper", status="resolved"), None, ""
    )
    workers[1].flush()
    assert workers[0].alerts()[0].status == "resolved"


def test_history_is_bounded_and_text_is_capped(tmp_path: Path) -> None:
    clock = ManualClock()
    history = History(ConsoleDB(tmp_path), clock=clock, max_alerts=5, max_notifications=7)
    for i in range(20):
        alert = Alert(f"A{i}", summary="x" * 5000)
        history.on_alert("queued", alert, None, "")
        history.on_alert("sent", alert, "hook", "y" * 5000)
        history.on_alert("queued", Alert(f"A{i}", status="resolved"), None, "")
    history.flush()
    entries = history.alerts(100)
    assert [e.name for e in entries] == [f"A{i}" for i in range(19, 14, -1)]
    assert all(len(e.summary) == MAX_TEXT for e in entries)
    assert sum(len(e.notifications) for e in entries) == 5
    assert all(len(n.detail) == MAX_TEXT for e in entries for n in e.notifications)


@dataclass
class Flaky(HealthCheck):
    name: str = "platform"
    failing: bool = False

    def run(self) -> None:
        if self.failing:
            raise CheckFailed("platform answers 503")


def test_each_checks_transitions_are_recorded_once_per_host(tmp_path: Path) -> None:
    """A check failing then recovering, seen by two workers' runners: the history holds
    pass→fail and fail→pass once each, with the failure's output."""
    app = Flask("health-history")
    histories, runners, checks = [], [], []
    for _ in range(2):
        history = History(ConsoleDB(tmp_path))
        check = Flaky()
        runner = HealthRunner(app, cache_ttl=0.0)
        runner.add(check)
        runner.add_listener(history.on_health)
        histories.append(history)
        runners.append(runner)
        checks.append(check)
    with app.app_context():
        for runner in runners:
            runner.run()  # a first pass is no transition
        for check in checks:
            check.failing = True
        for runner, history in zip(runners, histories, strict=True):
            runner.run()
            history.flush()
        for check in checks:
            check.failing = False
        for runner, history in zip(runners, histories, strict=True):
            runner.run()
            history.flush()
    for runner in runners:
        runner.close()
    transitions = histories[0].transitions()
    assert [(t.check, t.from_status, t.to_status) for t in transitions] == [
        ("platform", "fail", "pass"),
        ("platform", "pass", "fail"),
    ]
    assert "503" in transitions[1].output
    assert transitions[1].critical
    assert histories[1].last_status()["platform"].to_status == Status.PASS.value


def test_a_listener_never_writes_on_the_callers_thread(tmp_path: Path) -> None:
    """The listeners only queue: with the file unwritable nothing fails until the flush,
    which keeps the events for the next one."""
    db = ConsoleDB(tmp_path)
    db.path.mkdir()
    history = History(db)
    history.on_alert("queued", Alert("X"), None, "")
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        history.flush()
    db.path.rmdir()
    assert history.flush() == 1
    assert [a.name for a in history.alerts()] == ["X"]
