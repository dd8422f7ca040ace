"""In-process alert rules: error rate, latency p95, memory, disk, breakers, health, custom
rules; N consecutive failures; the background sampler with its deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pybreaker
import pytest
from flask import Flask

from flask_observe import Observe
from flask_observe._clock import ManualClock
from flask_observe.alerting import (
    AlertRouter,
    BreakerRule,
    CheckRule,
    DiskRule,
    ErrorRateRule,
    HealthRule,
    HttpWindow,
    LatencyRule,
    MemoryRule,
    RuleEngine,
    pybreaker_states,
)
from flask_observe.alerting.rules import Rule
from flask_observe.diagnostics import MemoryWatch
from flask_observe.metrics import Metrics
from flask_observe.state import current_state

from .test_metrics import ReadingClient


class Recorder(AlertRouter):
    """A router that keeps what it is given (the engine's output is what is under test)."""

    def __init__(self) -> None:
        super().__init__([])
        self.alerts: list[Any] = []

    def notify(self, alert: Any) -> bool:
        self.alerts.append(alert)
        return True


def traffic_app(make_app: Callable[..., Flask]) -> Flask:
    app = make_app("rules", log_stdout=False)
    app.test_client_class = ReadingClient

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    @app.get("/fail")
    def fail() -> tuple[str, int]:
        return "down", 503

    return app


def test_error_rate_fires_after_n_consecutive_evaluations_and_resolves(
    make_app: Callable[..., Flask],
) -> None:
    """20 % 5xx over the window (threshold 10 %): nothing at the 1st and 2nd failing
    evaluation, fires at the 3rd, resolves at the first passing one (no hysteresis here)."""
    app = traffic_app(make_app)
    metrics = current_state(app).get(Metrics)
    assert metrics is not None
    window = HttpWindow(metrics.http, window=60)
    recorder = Recorder()
    engine = RuleEngine(recorder, consecutive=3, service="svc", resolve_after=0)
    engine.add(ErrorRateRule(window, 0.1))
    client = app.test_client()
    window.sample()
    fired: list[int] = []
    for _round in range(4):
        for _ in range(8):
            client.get("/ok")
        for _ in range(2):
            client.get("/fail")
        window.sample()
        fired.append(len(engine.evaluate()))
    assert fired == [0, 0, 1, 1]  # fires at the 3rd; keeps reporting while firing
    assert recorder.alerts[0].name == "HighErrorRate"
    assert recorder.alerts[0].status == "firing"
    assert "20.0% of requests failed" in recorder.alerts[0].summary
    # Healthy again: a fresh window with only successes.
    window._samples.clear()
    window.sample()
    for _ in range(20):
        client.get("/ok")
    window.sample()
    assert [a.status for a in engine.evaluate()] == ["resolved"]
    assert engine.evaluate() == []


def test_a_firing_rule_resolves_only_after_passing_for_resolve_after_seconds() -> None:
    """Hysteresis, on the engine's clock: a rule that fails, passes once and fails again is one
    incident (no resolve, no second firing); it resolves at the first evaluation once it has
    passed for ``resolve_after`` seconds in a row. A rule's own ``resolve_after`` overrides
    the engine's; 0 resolves at the first passing evaluation."""
    clock = ManualClock()
    recorder = Recorder()
    engine = RuleEngine(recorder, consecutive=2, resolve_after=60, clock=clock)
    problem: dict[str, str | None] = {"now": "down"}
    engine.add(CheckRule("Flappy", lambda: problem["now"]))

    def at(seconds: float, now: str | None) -> list[str]:
        clock.advance(seconds - clock.monotonic())
        problem["now"] = now
        return [alert.status for alert in engine.evaluate()]

    assert at(0, "down") == []
    assert at(15, "down") == ["firing"]
    assert at(30, None) == []  # passing since 30 s
    assert at(45, "down") == ["firing"]  # the same incident, still firing; the wait restarts
    assert [at(t, None) for t in (60, 75, 90, 105)] == [[], [], [], []]
    assert at(119.9, None) == []  # 59.9 s of passing
    assert at(120, None) == ["resolved"]  # 60 s
    assert at(135, None) == []
    assert at(150, "down") == []  # a new incident: 2 failing evaluations again
    assert at(165, "down") == ["firing"]

    quick = RuleEngine(Recorder(), consecutive=1, resolve_after=60, clock=clock)
    quick.add(CheckRule("Quick", lambda: problem["now"], resolve_after=0))
    assert [a.status for a in quick.evaluate()] == ["firing"]
    problem["now"] = None
    assert [a.status for a in quick.evaluate()] == ["resolved"]


def test_latency_p95_rule_reads_the_histogram(make_app: Callable[..., Flask]) -> None:
    """Ten requests of 0.3 s in the app's duration histogram put the windowed p95 in the
    (0.25, 0.5] bucket: a 0.2 s threshold fires, a 0.6 s one does not."""
    app = traffic_app(make_app)
    metrics = current_state(app).get(Metrics)
    assert metrics is not None
    window = HttpWindow(metrics.http, window=60)
    window.sample()
    for _ in range(10):  # what the request hook records for a 0.3 s request
        metrics.http.duration.labels("GET", "/ok").observe(0.3)
    window.sample()
    p95 = window.quantile(0.95)
    assert p95 is not None
    assert 0.25 < p95 <= 0.5
    assert LatencyRule(window, 0.2).evaluate() is not None
    assert LatencyRule(window, 0.6).evaluate() is None


def test_breaker_rule_with_a_real_pybreaker() -> None:
    """A pybreaker.CircuitBreaker opened by failures makes the rule fail, naming it; closed
    again, the rule passes."""
    breaker = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60, name="platform-api")
    rule = BreakerRule(pybreaker_states(breaker))
    assert rule.evaluate() is None

    def broken() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises((ConnectionError, pybreaker.CircuitBreakerError)):
            breaker.call(broken)
    assert breaker.current_state == "open"
    assert rule.evaluate() == "circuit breaker(s) open: platform-api"
    breaker.close()
    assert rule.evaluate() is None


def test_health_rule_lists_failing_checks() -> None:
    """Checks reported failing (anything but True) are named."""
    results: dict[str, bool | str] = {"db": True, "redis": "timeout after 1s"}
    rule = HealthRule(lambda: results)
    assert rule.evaluate() == "health check(s) failing: redis"
    results["redis"] = True
    assert rule.evaluate() is None


def test_disk_rule_thresholds(tmp_path: Any) -> None:
    """Free share below the threshold fails; above passes."""
    assert DiskRule(str(tmp_path), 0.0).evaluate() is None
    problem = DiskRule(str(tmp_path), 0.999999).evaluate()
    assert problem is not None
    assert "free on" in problem


def test_memory_rule_on_rss_and_growth() -> None:
    """RSS above the limit, or growth over the window above the threshold, fails."""
    watch = MemoryWatch(None, window=100, threshold=50)
    watch.sample(now=0, rss=100e6)
    watch.sample(now=100, rss=110e6)  # 10 MB in 100 s = 360 MB/hour
    growth = watch.growth_mb_per_hour()
    assert growth == pytest.approx(360.0)
    assert "growing 360.0 MB/hour" in (
        MemoryRule(watch.rss, watch.growth_mb_per_hour, 0, 50).evaluate() or ""
    )
    assert "RSS 110 MB" in (
        MemoryRule(watch.rss, watch.growth_mb_per_hour, 100, 0).evaluate() or ""
    )
    assert MemoryRule(watch.rss, watch.growth_mb_per_hour, 200, 500).evaluate() is None


def test_a_rule_that_raises_counts_as_failing_with_the_reason() -> None:
    """A broken rule fires an alert saying it could not be evaluated (never crashes the
    sampler)."""
    recorder = Recorder()
    engine = RuleEngine(recorder, consecutive=1)

    def broken() -> str | None:
        raise KeyError("missing")

    engine.add(CheckRule("Broken", broken))
    (alert,) = engine.evaluate()
    assert "could not be evaluated: KeyError" in alert.summary


@pytest.mark.realtime  # the app's own ticker thread, on the wall clock
def test_sampler_starts_with_the_first_request_and_skips_a_hung_rule(
    make_app: Callable[..., Flask],
) -> None:
    """The background sampler is not running after init_app, starts with the first request,
    evaluates rules every period, and a rule that hangs past the period does not stall the
    others (it is skipped while still running)."""
    from .alert_sinks import Sink

    with Sink() as sink:
        app = make_app(
            "sampler",
            log_stdout=False,
            alert_channels=[{"type": "webhook", "url": sink.url + "/h"}],
            alert_allow_http=True,
            alert_allow_hosts=["127.0.0.1"],
            sample_interval_seconds=0.1,
            alert_rules_consecutive=1,
        )
        state = current_state(app)
        assert state.ticker is not None
        assert state.get(RuleEngine) is not None
        assert not state.ticker.running
        release = threading.Event()
        state.get(RuleEngine).rules.clear()

        class Hangs:
            name, severity = "Hangs", "info"

            def evaluate(self) -> str | None:
                release.wait(5)
                return None

        calls = {"n": 0}

        def count() -> str | None:
            calls["n"] += 1
            return "always failing"

        state.ticker.add("hung task", Hangs().evaluate)
        state.get(RuleEngine).add(CheckRule("Counted", count))
        app.test_client().get("/nothing-here")
        assert state.ticker.running
        received = sink.wait_for(1, timeout=5)
        deadline = time.monotonic() + 3
        while calls["n"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        still_hung = not release.is_set()
        release.set()
        assert still_hung
        assert calls["n"] >= 3
        assert received[0][2]["name"] == "Counted"


def test_rules_follow_the_small_interface() -> None:
    """Anything with name, severity and evaluate() is a rule (the Protocol health and breaker
    integrations build on)."""

    class Custom:
        name, severity = "Custom", "warning"

        def evaluate(self) -> str | None:
            return "custom problem"

    rule: Rule = Custom()
    recorder = Recorder()
    engine = RuleEngine(recorder, consecutive=1, service="svc")
    engine.add(rule)
    (alert,) = engine.evaluate()
    assert (alert.name, alert.severity, alert.service) == ("Custom", "warning", "svc")


def alerting_app(make_app: Callable[..., Flask], **config: Any) -> Flask:
    return make_app(
        f"wired-{time.monotonic_ns()}",
        log_stdout=False,
        alert_channels=[{"type": "webhook", "url": "http://127.0.0.1:9/unused"}],
        alert_allow_http=True,
        alert_allow_hosts=["127.0.0.1"],
        alert_rules_consecutive=1,
        alert_resolve_after_seconds=0,
        **config,
    )


def only(engine: RuleEngine, name: str) -> None:
    engine.rules[:] = [r for r in engine.rules if r.name == name]
    engine.router = Recorder()


def test_breaker_rule_is_wired_to_the_apps_circuit_breakers(make_app: Callable[..., Flask]) -> None:
    """A breaker made with observe.circuit_breaker opens: the app's CircuitBreakerOpen rule
    fires naming it, and resolves when it closes."""
    app = alerting_app(make_app)
    breaker = Observe().circuit_breaker("billing-api", app=app, fail_max=2, reset_timeout=60)
    engine = current_state(app).get(RuleEngine)
    assert engine is not None
    only(engine, "CircuitBreakerOpen")
    assert engine.evaluate() == []

    def broken() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises((ConnectionError, pybreaker.CircuitBreakerError)):
            breaker.call(broken)
    (alert,) = engine.evaluate()
    assert (alert.status, alert.summary) == ("firing", "circuit breaker(s) open: billing-api")
    breaker.close()
    assert [a.status for a in engine.evaluate()] == ["resolved"]


def test_health_rule_is_wired_to_the_apps_health_checks(make_app: Callable[..., Flask]) -> None:
    """A registered health check failing fires HealthCheckFailing (through the health runner,
    with its deadlines and cache); passing again resolves it."""
    app = alerting_app(make_app, health_cache_ttl=0)
    ok = {"value": True}
    Observe().add_health_check(
        __import__("flask_observe.health.checks", fromlist=["FunctionCheck"]).FunctionCheck(
            "search-index", func=lambda: ok["value"], cache_ttl=0
        ),
        app=app,
    )
    Observe().startup_complete(app)
    engine = current_state(app).get(RuleEngine)
    assert engine is not None
    only(engine, "HealthCheckFailing")
    assert engine.evaluate() == []
    ok["value"] = False
    (alert,) = engine.evaluate()
    assert alert.summary == "health check(s) failing: search-index"
    ok["value"] = True
    assert [a.status for a in engine.evaluate()] == ["resolved"]
