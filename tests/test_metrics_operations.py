"""``flask_observe.timed`` and ``FailureStreak``: the app's own operations timed, counted by
outcome, traced and logged on failure in one line; consecutive failures as a gauge; every
label bounded whatever values arrive."""

from __future__ import annotations

import logging
import random
import string
from collections.abc import Callable

import pytest
from flask import Flask

from flask_observe import FailureStreak, Observe, bind_correlation_id, timed
from flask_observe.metrics import MetricNameError, Metrics
from flask_observe.metrics.operations import MAX_LABEL_SETS, OTHER

from .peers import OtlpReceiver, wait_for


def value(app: Flask, name: str, **labels: str) -> float | None:
    return Observe.handle(Metrics, app).registry.get_sample_value(name, labels)


class ApiDown(Exception):
    pass


def test_a_decorated_operation_is_timed_and_counted_by_outcome_and_logs_its_failures(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """Two successes and a failure of ``scrape_account``: the counter and the histogram by
    outcome, the exception goes on to the caller, one WARNING line says what failed."""
    app = make_app(log_stdout=False)

    @timed("scrape_account", labels={"platform": "twitter"})
    def scrape(account: str) -> str:
        if account == "gone":
            raise ApiDown("503 from the API")
        return account.upper()

    with app.app_context():
        assert scrape("acme") == "ACME"
        assert scrape("beta") == "BETA"
        with caplog.at_level(logging.WARNING, "flask_observe.timed"), pytest.raises(ApiDown):
            scrape("gone")
    ok = {"platform": "twitter", "outcome": "success"}
    bad = {"platform": "twitter", "outcome": "failure"}
    assert value(app, "scrape_account_total", **ok) == 2
    assert value(app, "scrape_account_total", **bad) == 1
    assert value(app, "scrape_account_duration_seconds_count", **ok) == 2
    assert value(app, "scrape_account_duration_seconds_count", **bad) == 1
    (line,) = [r for r in caplog.records if r.name == "flask_observe.timed"]
    assert line.levelno == logging.WARNING
    assert "scrape_account failed after" in line.getMessage()
    assert "ApiDown: 503 from the API" in line.getMessage()
    assert line.operation == "scrape_account"  # type: ignore[attr-defined]
    assert line.error_type == "ApiDown"  # type: ignore[attr-defined]
    assert line.operation_platform == "twitter"  # type: ignore[attr-defined]


def test_a_duration_on_a_bound_stays_in_its_bucket_and_the_sum_is_in_whole_quanta() -> None:
    """An operation timed at exactly 0.1 s (a bound) is counted in the 0.1 bucket, not the
    next; the sum adds whole multiples of 2**-20 s (so the workers' files add up exactly
    under gunicorn), rounded down: each value at most one quantum short."""
    from flask_observe.metrics.multiprocess import QUANTUM
    from flask_observe.metrics.operations import Operations

    metrics = Metrics()
    operations = Operations(metrics, exemplars=False)
    operation = operations.operation("sync", [])
    assert operation is not None
    for seconds in (0.1, 0.1, 0.3):
        operations.record("sync", operation, {}, seconds, False, None)
    sample = metrics.registry.get_sample_value
    ok = {"outcome": "success"}
    assert sample("sync_duration_seconds_bucket", {**ok, "le": "0.05"}) == 0
    assert sample("sync_duration_seconds_bucket", {**ok, "le": "0.1"}) == 2
    assert sample("sync_duration_seconds_bucket", {**ok, "le": "0.25"}) == 2
    assert sample("sync_duration_seconds_bucket", {**ok, "le": "0.5"}) == 3
    total = sample("sync_duration_seconds_sum", ok)
    assert total is not None
    assert (total / QUANTUM).is_integer()
    assert 0.5 - 3 * QUANTUM < total <= 0.5


def test_the_context_manager_counts_a_marked_failure_and_the_streak_resets_on_success(
    make_app: Callable[..., Flask],
) -> None:
    """``timing.fail()`` without an exception is a failure; failures in a row raise
    ``operation_consecutive_failures``, a success puts it back to 0."""
    app = make_app(log_stdout=False)
    with app.app_context():
        for answer in (False, False, False):
            with timed("export_batch") as timing:
                if not answer:
                    timing.fail()
        assert value(app, "operation_consecutive_failures", operation="export_batch") == 3
        assert FailureStreak("export_batch").count == 3
        with timed("export_batch"):
            pass
    assert value(app, "operation_consecutive_failures", operation="export_batch") == 0
    assert value(app, "export_batch_total", outcome="failure") == 3
    assert value(app, "export_batch_total", outcome="success") == 1


def test_labels_from_the_call_and_the_first_running_app_outside_a_context(
    make_app: Callable[..., Flask],
) -> None:
    """A labels function reads the call's arguments; outside any app context (a Celery task,
    a thread) the first running app records the run."""
    app = make_app(log_stdout=False)

    @timed("fetch_posts", labels=lambda platform, n: {"platform": platform})
    def fetch(platform: str, n: int) -> int:
        return n

    assert fetch("instagram", 3) == 3
    assert fetch("tiktok", 1) == 1
    assert value(app, "fetch_posts_total", platform="instagram", outcome="success") == 1
    assert value(app, "fetch_posts_total", platform="tiktok", outcome="success") == 1


def test_failure_streak_by_hand(make_app: Callable[..., Flask]) -> None:
    app = make_app(log_stdout=False)
    streak = FailureStreak("instagram_login")
    with app.app_context():
        assert [streak.failed() for _ in range(4)] == [1, 2, 3, 4]
        assert value(app, "operation_consecutive_failures", operation="instagram_login") == 4
        streak.succeeded()
        assert streak.count == 0
    assert value(app, "operation_consecutive_failures", operation="instagram_login") == 0


def test_names_and_label_names_are_checked_before_the_block_runs(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(log_stdout=False)
    ran: list[int] = []
    with pytest.raises(MetricNameError, match="base units"):
        timed("scrape_ms")
    with pytest.raises(MetricNameError):
        timed("bad name")
    with app.app_context():
        with timed("sync", labels={"platform": "x"}):
            ran.append(1)
        with pytest.raises(MetricNameError, match="keeps its label names"), timed("sync"):
            ran.append(2)
        with (
            pytest.raises(MetricNameError, match="reserved"),
            timed("other_op", labels={"outcome": "x"}),
        ):
            ran.append(3)
    assert ran == [1]


def test_label_values_and_operations_stay_bounded_with_random_inputs(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """10,000 runs with random label values: at most MAX_LABEL_SETS value sets, the rest
    ``other``; 300 random operation names: at most 100 operations per app, one warning."""
    app = make_app(log_stdout=False)
    rng = random.Random(4)
    with app.app_context():
        for _ in range(10_000):
            account = "".join(rng.choices(string.printable, k=rng.randint(0, 50)))
            with timed("scrape_account", labels={"account": account}):
                pass
        with caplog.at_level(logging.WARNING, "flask_observe"):
            for i in range(300):
                name = "op_" + "".join(rng.choices(string.ascii_lowercase, k=12)) + str(i)
                with timed(name):
                    pass
                FailureStreak(name).failed()
    registry = Observe.handle(Metrics, app).registry
    families = {f.name: f for f in registry.collect()}
    accounts = {s.labels["account"] for s in families["scrape_account"].samples}
    assert len(accounts) <= MAX_LABEL_SETS + 1
    assert OTHER in accounts
    assert (
        sum(name.startswith("op_") and not name.endswith("_duration_seconds") for name in families)
        <= 100
    )
    streaks = {s.labels["operation"] for s in families["operation_consecutive_failures"].samples}
    assert len(streaks) <= 100
    refusals = [r for r in caplog.records if "is not recorded" in r.getMessage()]
    assert 1 <= len(refusals) <= 300 - 99 + 1


def test_each_run_is_a_span_with_its_error_and_an_exemplar_with_the_ids(
    make_app: Callable[..., Flask],
) -> None:
    """Tracing on: each run is a span named after the operation, a failing one with ERROR
    status and the exception event; the histogram's exemplar has the trace and correlation
    IDs."""
    from prometheus_client.openmetrics.exposition import generate_latest

    with OtlpReceiver() as receiver:
        app = make_app("timed-traced", log_stdout=False, tracing_endpoint=receiver.endpoint)
        with app.app_context(), bind_correlation_id("rid-timed-1"):
            with timed("sync_profile", labels={"platform": "x"}):
                pass
            with pytest.raises(ApiDown), timed("sync_profile", labels={"platform": "x"}):
                raise ApiDown("boom")
        text = generate_latest(Observe.handle(Metrics, app).registry).decode()
        from flask_observe.state import current_state
        from flask_observe.tracing.handle import TracingSetup

        tracing = current_state(app).get(TracingSetup)
        assert tracing is not None
        tracing.provider.force_flush()  # type: ignore[attr-defined]
        spans = wait_for(
            lambda: [s for s in receiver.spans() if s["name"] == "sync_profile"] or None, 10
        )
    assert spans is not None
    assert len(spans) == 2
    ok, failed = sorted(spans, key=lambda s: len(s["events"]))
    assert ok["attributes"]["operation.platform"] == "x"
    assert failed["status"] == 2  # STATUS_CODE_ERROR
    assert "exception" in failed["events"]
    lines = [
        x
        for x in text.splitlines()
        if x.startswith("sync_profile_duration_seconds_bucket") and "#" in x
    ]
    assert lines
    assert any(f'trace_id="{s["trace_id"]}"' in x for s in spans for x in lines)
    assert all('correlation_id="rid-timed-1"' in x for x in lines)


def test_without_flask_observe_the_code_still_runs() -> None:
    """A process where no app has flask_observe: the operation runs, its exception and its
    result reach the caller, nothing is recorded (a fresh interpreter, no app in it)."""
    import subprocess
    import sys

    code = (
        "from flask_observe import timed, FailureStreak\n"
        "from flask_observe.metrics.operations import current_operations\n"
        "assert current_operations() is None\n"
        "f = timed('plain')(lambda: 7)\n"
        "assert f() == 7\n"
        "try:\n"
        "    with timed('plain'):\n"
        "        raise KeyError('k')\n"
        "except KeyError:\n"
        "    print('raised')\n"
        "print(FailureStreak('plain').failed())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["raised", "0"]
