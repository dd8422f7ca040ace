"""The runner: checks in parallel with thread-enforced deadlines, cached, coalesced, bounded."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from flask import Flask

from flask_observe._clock import ManualClock
from flask_observe.health import (
    CheckFailed,
    CheckResult,
    CheckWarning,
    FunctionCheck,
    HealthCheck,
    HealthRunner,
    Observation,
    Status,
)

from .conftest import assert_at_deadline


@pytest.fixture
def app() -> Flask:
    return Flask("runner-test")


@pytest.fixture
def make_runner(app: Flask) -> Iterator[Callable[..., HealthRunner]]:
    made: list[HealthRunner] = []

    def factory(**kwargs: object) -> HealthRunner:
        runner = HealthRunner(app, **kwargs)  # type: ignore[arg-type]
        made.append(runner)
        return runner

    yield factory
    for runner in made:
        runner.close()


@dataclass
class Sleeper(HealthCheck):
    """Sleeps, counts its runs; waits on ``gate`` when one is given (a hung dependency)."""

    seconds: float = 0.0
    gate: threading.Event | None = field(default=None, repr=False)
    calls: int = 0

    def run(self) -> None:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.seconds)


def threads_of(check: str) -> int:
    """How many threads are running the named check now."""
    return sum(t.name == f"flask_observe-health-{check}" for t in threading.enumerate())


def wait_no_threads_of(check: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while threads_of(check) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threads_of(check) == 0


@pytest.mark.realtime
def test_checks_run_in_parallel(make_runner: Callable[..., HealthRunner]) -> None:
    """Three 0.4 s checks answer in about 0.4 s, not 1.2 s."""
    runner = make_runner(cache_ttl=0)
    for name in ("a", "b", "c"):
        runner.add(Sleeper(name, seconds=0.4, timeout=2))
    started = time.perf_counter()
    report = runner.run("readiness")
    elapsed = time.perf_counter() - started
    assert report.status is Status.PASS
    assert [r.name for r in report.results] == ["a", "b", "c"]
    assert elapsed < 0.4 + 0.3, elapsed


@pytest.mark.realtime
def test_a_hung_check_fails_at_its_deadline_and_the_others_still_report(
    make_runner: Callable[..., HealthRunner],
) -> None:
    """A check that never returns fails at its deadline ± 0.3 s with 'timed out'."""
    gate = threading.Event()
    runner = make_runner(cache_ttl=0)
    runner.add(Sleeper("hung", gate=gate, timeout=0.8))
    runner.add(Sleeper("quick", seconds=0.01, timeout=0.8))
    try:
        started = time.perf_counter()
        report = runner.run()
        assert_at_deadline(time.perf_counter() - started, 0.8)
        hung, quick = report.results
        assert (hung.status, hung.timed_out, hung.output) == (
            Status.FAIL,
            True,
            "timed out after 0.8s",
        )
        assert quick.status is Status.PASS
        assert report.status is Status.FAIL
    finally:
        gate.set()


def test_hung_checks_hold_one_thread_each_however_many_probes(
    make_runner: Callable[..., HealthRunner],
) -> None:
    """100 probes (20 concurrent at a time) against a hung check start one thread for it.

    Probes after its deadline fail at once ("has not finished"), not after another timeout.
    """
    gate = threading.Event()
    runner = make_runner(cache_ttl=0)
    check = runner.add(Sleeper("stuck", gate=gate, timeout=0.5))
    assert isinstance(check, Sleeper)

    try:
        for _ in range(5):
            probes = [threading.Thread(target=runner.run) for _ in range(20)]
            for probe in probes:
                probe.start()
            for probe in probes:
                probe.join(5)
            assert threads_of("stuck") == 1
        started = time.perf_counter()
        late = runner.run().results[0]
        assert time.perf_counter() - started < 0.25
        assert late.status is Status.FAIL
        assert late.output is not None
        assert "has not finished" in late.output
        assert check.calls == 1
    finally:
        gate.set()
    wait_no_threads_of("stuck")
    # Freed: the next probe runs the check again.
    assert runner.run().results[0].status is Status.PASS
    assert check.calls == 2


@pytest.mark.realtime
def test_a_run_hung_for_good_is_given_up_and_a_recovered_dependency_is_seen(
    make_runner: Callable[..., HealthRunner],
) -> None:
    """A check without driver timeouts whose first call hangs for good: probes fail at once
    until ``retry_hung_after``, then a new run starts and, the dependency being back, passes
    (readiness does not stay failed for ever on one stuck socket)."""
    forever = threading.Event()
    calls: list[float] = []

    def stuck_once() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            forever.wait(30)

    runner = make_runner(cache_ttl=0, retry_hung_after=0.6)
    runner.add(FunctionCheck("flaky", timeout=0.2, func=stuck_once))
    try:
        assert runner.run().results[0].timed_out
        started = time.monotonic()
        while time.monotonic() - started < 0.3:
            late = runner.run().results[0]
            assert late.output is not None
            assert "has not finished" in late.output
        assert len(calls) == 1
        time.sleep(0.4)  # past retry_hung_after
        result = runner.run().results[0]
        assert (result.status, len(calls)) == (Status.PASS, 2)
    finally:
        forever.set()


@pytest.mark.realtime
def test_given_up_runs_are_bounded_however_long_it_hangs(
    make_runner: Callable[..., HealthRunner],
) -> None:
    """A dependency hung for good, probed 20 at a time over many retry periods: the check
    never holds more than 1 + MAX_ABANDONED threads; once they end, it runs normally."""
    from flask_observe.health.runner import MAX_ABANDONED

    gate = threading.Event()
    runner = make_runner(cache_ttl=0, retry_hung_after=0.15)
    check = runner.add(Sleeper("stuck", gate=gate, timeout=0.05))
    assert isinstance(check, Sleeper)

    most = 0
    try:
        deadline = time.monotonic() + 2.0  # more than 10 retry periods
        while time.monotonic() < deadline:
            probes = [threading.Thread(target=runner.run) for _ in range(20)]
            for probe in probes:
                probe.start()
            for probe in probes:
                probe.join(5)
            most = max(most, threads_of("stuck"))
            time.sleep(0.02)
        assert most == 1 + MAX_ABANDONED
        assert check.calls == 1 + MAX_ABANDONED
        late = runner.run().results[0]
        assert late.output is not None
        assert "has not finished" in late.output
    finally:
        gate.set()
    wait_no_threads_of("stuck")
    assert runner.run().results[0].status is Status.PASS


def test_concurrent_probes_share_one_run_and_the_cache_serves_the_next(
    make_runner: Callable[..., HealthRunner],
) -> None:
    """30 simultaneous probes → one run; probes within the TTL reuse it; after it, a new run.
    (The cache reads the runner's clock: moved by hand, not slept.)"""
    clock = ManualClock()
    runner = make_runner(cache_ttl=0.6, clock=clock)
    check = runner.add(Sleeper("db", seconds=0.2, timeout=2))
    assert isinstance(check, Sleeper)
    barrier = threading.Barrier(30)
    statuses: list[Status] = []

    def probe() -> None:
        barrier.wait()
        statuses.append(runner.run().status)

    probes = [threading.Thread(target=probe) for _ in range(30)]
    for t in probes:
        t.start()
    for t in probes:
        t.join(5)
    assert statuses == [Status.PASS] * 30
    assert check.calls == 1
    runner.run()
    assert check.calls == 1
    clock.advance(0.59)
    runner.run()
    assert check.calls == 1
    clock.advance(0.02)
    runner.run()
    assert check.calls == 2
    runner.run(fresh=True)
    assert check.calls == 3


@pytest.mark.realtime
def test_a_late_answer_does_not_replace_the_timeout(
    make_runner: Callable[..., HealthRunner],
) -> None:
    """A check that passes only after its deadline stays failed: too slow is a failure."""
    runner = make_runner(cache_ttl=30)
    runner.add(Sleeper("slow", seconds=0.6, timeout=0.3))
    assert runner.run().results[0].status is Status.FAIL
    time.sleep(0.5)
    assert runner.latest()["slow"].timed_out
    assert runner.run().results[0].timed_out


def test_unexpected_errors_say_unknown_error_and_log_the_traceback(
    make_runner: Callable[..., HealthRunner], caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a check is 'unknown error' to callers; the traceback is in the log only."""

    def broken() -> None:
        raise ZeroDivisionError("internal detail 42")

    runner = make_runner()
    runner.add(FunctionCheck("broken", func=broken))
    with caplog.at_level(logging.ERROR, logger="flask_observe"):
        result = runner.run().results[0]
    assert (result.status, result.output) == (Status.FAIL, "unknown error")
    assert "internal detail 42" not in repr(result)
    logged = [r for r in caplog.records if r.exc_info]
    assert logged
    assert "ZeroDivisionError" in caplog.text


def test_shown_messages_are_redacted(make_runner: Callable[..., HealthRunner]) -> None:
    """Passwords in URLs, password= pairs and the check's own secrets never reach output."""

    @dataclass
    class Leaky(HealthCheck):
        token: str = field(default="tok-ABCDEF-123", repr=False)

        def run(self) -> None:
            raise CheckFailed(
                "cannot reach postgresql://scraper:hunter2@db:5432/app"
                f" (password=letmein, token {self.token})\nsecond line"
            )

        def secrets(self) -> list[str]:
            return [self.token]

    runner = make_runner()
    runner.add(Leaky("leaky"))
    output = runner.run().results[0].output
    assert output is not None
    for secret in ("hunter2", "letmein", "tok-ABCDEF-123"):
        assert secret not in output
    assert "postgresql://***@db:5432/app" in output
    assert "\n" not in output
    assert "tok-ABCDEF-123" not in repr(Leaky("x"))


def test_function_checks_return_values(make_runner: Callable[..., HealthRunner]) -> None:
    """None/True pass; False fails; a string warns; Observations are used as given."""
    runner = make_runner()
    runner.add(FunctionCheck("none", func=lambda: None))
    runner.add(FunctionCheck("false", func=lambda: False, critical=False))
    runner.add(FunctionCheck("text", func=lambda: "queue is long"))
    runner.add(
        FunctionCheck(
            "obs",
            func=lambda: Observation("connections", 7, "connections", Status.WARN, "7 of 8"),
        )
    )
    results = {r.name: r for r in runner.run().results}
    assert results["none"].status is Status.PASS
    assert results["false"].status is Status.FAIL
    assert results["false"].service_status is Status.WARN
    assert (results["text"].status, results["text"].output) == (Status.WARN, "queue is long")
    assert results["obs"].observations[0].value == 7
    assert results["obs"].status is Status.WARN


def test_non_critical_failure_only_warns(make_runner: Callable[..., HealthRunner]) -> None:
    """The service fails only on a critical failure; warnings and minor failures warn."""

    def fail() -> None:
        raise CheckFailed("down")

    def warn() -> None:
        raise CheckWarning("slow")

    runner = make_runner()
    runner.add(FunctionCheck("minor", critical=False, func=fail))
    runner.add(FunctionCheck("meh", func=warn))
    assert runner.run().status is Status.WARN
    runner.add(FunctionCheck("major", func=fail))
    assert runner.run().status is Status.FAIL


def test_groups_select_checks(make_runner: Callable[..., HealthRunner]) -> None:
    """Liveness runs only liveness checks (none by default); the full report runs all."""
    runner = make_runner()
    runner.add(FunctionCheck("ready-only", func=lambda: None))
    runner.add(FunctionCheck("both", groups=("liveness", "readiness"), func=lambda: None))
    runner.add(FunctionCheck("boot", groups=("startup",), func=lambda: None))
    assert [r.name for r in runner.run("liveness").results] == ["both"]
    assert [r.name for r in runner.run("readiness").results] == ["ready-only", "both"]
    assert [r.name for r in runner.run("startup").results] == ["boot"]
    assert len(runner.run().results) == 3


def test_listeners_hear_new_results_not_cache_hits(
    make_runner: Callable[..., HealthRunner],
) -> None:
    """add_listener gets (result, previous) per run; a raising listener breaks nothing."""
    runner = make_runner(cache_ttl=60)
    heard: list[tuple[str, Status, Status | None]] = []

    def listener(result: CheckResult, previous: CheckResult | None) -> None:
        heard.append((result.name, result.status, previous.status if previous else None))

    def broken(result: CheckResult, previous: CheckResult | None) -> None:
        raise RuntimeError("listener bug")

    runner.add_listener(broken)
    runner.add_listener(listener)
    runner.add(FunctionCheck("x", func=lambda: None))
    assert runner.latest() == {}
    runner.run()
    runner.run()
    assert heard == [("x", Status.PASS, None)]
    runner.run(fresh=True)
    assert heard[-1] == ("x", Status.PASS, Status.PASS)
    assert runner.latest()["x"].status is Status.PASS
    trend = runner.trend("x")
    assert trend is not None
    assert (trend.runs, trend.passed) == (2, 2)


def test_startup_gate_until_marked(make_runner: Callable[..., HealthRunner]) -> None:
    """With wait_for_startup, readiness and startup fail until mark_started()."""
    runner = make_runner(wait_for_startup=True)
    assert runner.run("startup").status is Status.FAIL
    assert runner.run("readiness").results[0].output == "start-up not complete"
    assert runner.run("liveness").status is Status.PASS
    runner.mark_started()
    assert runner.run("startup").status is Status.PASS
    assert runner.run("readiness").status is Status.PASS


def test_registry_rules(make_runner: Callable[..., HealthRunner]) -> None:
    """Names are unique (replace= to swap), have no ':', groups are known, timeout > 0."""
    runner = make_runner(default_timeout=1.5)
    check = runner.add(FunctionCheck("one", func=lambda: None))
    assert check.timeout == 1.5
    with pytest.raises(ValueError, match="already registered"):
        runner.add(FunctionCheck("one", func=lambda: None))
    runner.add(FunctionCheck("one", func=lambda: False), replace=True)
    assert runner.run().status is Status.FAIL
    assert runner.remove("one") is not None
    assert runner.checks == ()
    with pytest.raises(ValueError, match="no ':'"):
        FunctionCheck("db:primary")
    with pytest.raises(ValueError, match="unknown group"):
        FunctionCheck("x", groups=("readyness",))
    with pytest.raises(ValueError, match="timeout"):
        FunctionCheck("x", timeout=0)


def test_checks_run_inside_the_app_context(
    app: Flask, make_runner: Callable[..., HealthRunner]
) -> None:
    """A check's thread has the app context, so it can use current_app and extensions."""
    from flask import current_app

    seen: list[str] = []
    runner = make_runner()
    runner.add(FunctionCheck("ctx", func=lambda: seen.append(current_app.name)))
    assert runner.run().status is Status.PASS
    assert seen == [app.name]


def test_status_changes_are_logged_once_each_with_what_changed(
    make_runner: Callable[..., HealthRunner], caplog: pytest.LogCaptureFixture
) -> None:
    """pass -> fail -> pass writes two lines (WARNING going bad, INFO recovering) with the
    check, the statuses, the duration and the output; results that change nothing write none."""
    state = {"up": True}

    def dependency() -> None:
        if not state["up"]:
            raise CheckFailed("connection refused")

    runner = make_runner(cache_ttl=0)
    runner.add(FunctionCheck("dep", func=dependency))
    caplog.set_level(logging.INFO, "flask_observe.health")
    runner.run()
    runner.run()
    state["up"] = False
    runner.run()
    runner.run()
    state["up"] = True
    runner.run()
    lines = [r for r in caplog.records if r.name == "flask_observe.health"]
    assert [(r.levelno, r.getMessage()) for r in lines] == [
        (logging.WARNING, "health check dep: pass -> fail"),
        (logging.INFO, "health check dep: fail -> pass"),
    ]
    went_bad = lines[0]
    assert (went_bad.check, went_bad.from_status, went_bad.to_status) == ("dep", "pass", "fail")  # type: ignore[attr-defined]
    assert went_bad.output == "connection refused"  # type: ignore[attr-defined]
    assert went_bad.duration_ms >= 0  # type: ignore[attr-defined]


def test_a_first_result_that_is_not_a_pass_is_a_transition_from_none(
    make_runner: Callable[..., HealthRunner], caplog: pytest.LogCaptureFixture
) -> None:
    runner = make_runner(cache_ttl=0)
    runner.add(FunctionCheck("cold", func=lambda: "warming up"))
    caplog.set_level(logging.INFO, "flask_observe.health")
    runner.run()
    messages = [r.getMessage() for r in caplog.records if r.name == "flask_observe.health"]
    assert messages == ["health check cold: none -> warn"]
