"""Circuit breakers: pybreaker's, per app, their state changes logged and visible in health."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pybreaker
import pytest
from flask import Flask

from flask_observe import Observe
from flask_observe.breakers import BreakerRegistry
from flask_observe.state import current_state

TOKEN = "breaker-etl6IRzndtfRcW6B_YshG0B9"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Down(Exception):
    pass


def failing() -> None:
    raise Down("upstream down")


def trip(breaker: pybreaker.CircuitBreaker) -> None:
    for _ in range(breaker.fail_max):
        with pytest.raises((Down, pybreaker.CircuitBreakerError)):
            breaker.call(failing)


def entry(app: Flask, name: str) -> dict[str, object]:
    doc = app.test_client().get("/health/ready", headers=AUTH).json
    return doc["checks"][f"{name}:circuitBreaker"][0]  # type: ignore[no-any-return]


@pytest.mark.realtime
def test_open_breaker_warns_and_state_changes_are_logged(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """closed → pass; fail_max failures → open: logged at WARNING, readiness 200 with the
    entry warning (not critical); a success after reset_timeout closes it again (logged)."""
    app = make_app("brk", log_stdout=False, auth_token=TOKEN)
    observe = Observe()
    breaker = observe.circuit_breaker("platform", app=app, fail_max=3, reset_timeout=0.5)
    assert isinstance(breaker, pybreaker.CircuitBreaker)
    assert observe.circuit_breaker("platform", app=app) is breaker
    assert entry(app, "platform")["status"] == "pass"
    with caplog.at_level(logging.INFO, logger="flask_observe.breakers"):
        trip(breaker)
        assert breaker.current_state == "open"
        ready = app.test_client().get("/health/ready", headers=AUTH)
        assert ready.status_code == 200
        assert ready.json["status"] == "warn"
        opened = entry(app, "platform")
        assert (opened["status"], opened["observedValue"]) == ("warn", "open")
        assert opened["failCounter"] == 3
        assert "next trial call" in str(opened["output"])
        time.sleep(0.6)
        assert breaker.call(lambda: "ok") == "ok"
    assert breaker.current_state == "closed"
    changes = [
        (r.levelname, r.old_state, r.new_state)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "flask_observe.breakers"
    ]
    assert changes == [
        ("WARNING", "closed", "open"),
        ("INFO", "open", "half-open"),
        ("INFO", "half-open", "closed"),
    ]
    assert entry(app, "platform")["status"] == "pass"


@pytest.mark.realtime
def test_critical_breaker_fails_readiness_until_a_trial_is_due(
    make_app: Callable[..., Flask],
) -> None:
    """critical=True: open → fail (503) — but once reset_timeout has passed it only warns, so
    an unready pod is not starved of the traffic that would close its breaker."""
    app = make_app("brk-critical", log_stdout=False, auth_token=TOKEN)
    breaker = Observe().circuit_breaker(
        "payments", app=app, fail_max=2, reset_timeout=0.5, critical=True
    )
    trip(breaker)
    assert app.test_client().get("/health/ready").status_code == 503
    time.sleep(0.6)
    assert breaker.current_state == "open"
    assert app.test_client().get("/health/ready").status_code == 200
    assert entry(app, "payments")["status"] == "warn"


def test_half_open_warns(make_app: Callable[..., Flask]) -> None:
    """half-open (trial under way) is a warning."""
    app = make_app("brk-half", log_stdout=False, auth_token=TOKEN)
    breaker = Observe().circuit_breaker("api", app=app, fail_max=1, reset_timeout=60)
    breaker.half_open()
    assert entry(app, "api")["status"] == "warn"


def test_registry_listeners_hear_every_breaker_and_may_fail(
    make_app: Callable[..., Flask],
) -> None:
    """state.get(BreakerRegistry).add_listener hears changes of breakers made before and after it;
    a listener that raises does not disturb the guarded call."""
    app = make_app("brk-listen", log_stdout=False)
    observe = Observe()
    first = observe.circuit_breaker("one", app=app, fail_max=1)
    heard: list[tuple[str, str, str]] = []
    registry = current_state(app).get(BreakerRegistry)
    registry.add_listener(lambda name, old, new: heard.append((name, old, new)))
    registry.add_listener(lambda *_: 1 / 0)
    second = observe.circuit_breaker("two", app=app, fail_max=1)
    trip(first)
    trip(second)
    assert heard == [("one", "closed", "open"), ("two", "closed", "open")]
    assert set(registry.all()) == {"one", "two"}


def test_breakers_are_per_app(make_app: Callable[..., Flask]) -> None:
    """One Observe shared by two apps: same name, two independent breakers."""
    observe = Observe()
    a = make_app("brk-a", log_stdout=False)
    b = make_app("brk-b", log_stdout=False)
    one = observe.circuit_breaker("platform", app=a, fail_max=1)
    with b.app_context():
        two = observe.circuit_breaker("platform", fail_max=1)
    assert one is not two
    trip(one)
    assert (one.current_state, two.current_state) == ("open", "closed")


def test_breaker_needs_an_app() -> None:
    """Outside an app context and without app=, circuit_breaker() says what to do."""
    with pytest.raises(RuntimeError, match="app="):
        Observe().circuit_breaker("x")


def test_excluded_exceptions_do_not_count(make_app: Callable[..., Flask]) -> None:
    """exclude= (pybreaker's) lets business errors through without opening the circuit."""
    app = make_app("brk-excl", log_stdout=False)
    breaker = Observe().circuit_breaker("api", app=app, fail_max=1, exclude=[KeyError])

    def missing() -> None:
        raise KeyError("no such account")

    for _ in range(3):
        with pytest.raises(KeyError):
            breaker.call(missing)
    assert breaker.current_state == "closed"
