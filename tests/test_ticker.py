"""The background sampler and the alert sender: started lazily in each process (so a forked
gunicorn worker runs its own), and stopped by ``Observe.shutdown(app)``; rounds on the
ticker's clock, a stuck task skipped and not stacked."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from flask_observe import Observe
from flask_observe._clock import ManualClock
from flask_observe._ticker import Ticker
from flask_observe.alerting import Alert, AlertRouter, CheckRule, RuleEngine
from flask_observe.state import current_state

from .alert_sinks import Sink, WatchedClock
from .peers import wait_for


def threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def alerting_app(make_app: Callable[..., Flask], sink: Sink, name: str) -> Flask:
    return make_app(
        name,
        log_stdout=False,
        alert_channels=[{"type": "webhook", "url": sink.url + "/h"}],
        alert_allow_http=True,
        alert_allow_hosts=["127.0.0.1"],
        sample_interval_seconds=0.05,
        alert_rules_consecutive=1,
    )


@pytest.mark.realtime  # real threads, processes and receivers
def test_shutdown_stops_the_sampler_and_the_alert_sender(make_app: Callable[..., Flask]) -> None:
    """After Observe.shutdown(app) the sampler thread, its pool and the sender thread are gone,
    and a request to the (unwrapped) app starts nothing again."""
    with Sink() as sink:
        app = alerting_app(make_app, sink, "stops")
        state = current_state(app)
        assert state.ticker is not None
        assert state.get(AlertRouter) is not None
        before = set(threads("flask_observe-"))
        app.test_client().get("/health/live")
        assert state.ticker.running
        state.get(AlertRouter).notify(Alert("Started", "info"))
        sink.wait_for(1, timeout=5)
        started = set(threads("flask_observe-")) - before
        assert {t.name for t in started} >= {"flask_observe-ticker", "flask_observe-alerts"}
        Observe().shutdown(app)
        deadline = time.monotonic() + 5
        while any(t.is_alive() for t in started) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [t.name for t in started if t.is_alive()] == []
        assert not state.ticker.running
        app.test_client().get("/health/live")
        assert not state.ticker.running
        assert state.get(AlertRouter).notify(Alert("AfterShutdown", "info")) is False


@pytest.mark.realtime  # real threads, processes and receivers
def test_a_forked_child_runs_its_own_sampler_and_sender(make_app: Callable[..., Flask]) -> None:
    """The parent's threads do not survive fork (gunicorn workers, --preload): the child's first
    request starts a sampler of its own, whose rules alert through a sender thread of the
    child's; the parent's keep running."""
    with Sink() as sink:
        app = alerting_app(make_app, sink, "forks")
        state = current_state(app)
        assert state.ticker is not None
        assert state.get(RuleEngine) is not None
        state.get(RuleEngine).rules.clear()
        state.get(RuleEngine).add(
            CheckRule("FromPid", lambda: f"pid {os.getpid()}", severity="info")
        )
        app.test_client().get("/health/live")
        parent_thread = state.ticker._thread
        assert parent_thread is not None
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report and leave without running pytest's teardown
            code = 1
            try:
                report = {"running_after_fork": state.ticker.running}
                app.test_client().get("/health/live")
                child_thread = state.ticker._thread
                report["running_after_request"] = state.ticker.running
                report["new_thread"] = child_thread is not None and child_thread.is_alive()
                router = state.get(AlertRouter)
                assert router is not None
                deadline = time.monotonic() + 5
                while not router.sent and time.monotonic() < deadline:
                    time.sleep(0.02)
                report["sent"] = router.sent
                os.write(write, json.dumps(report).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        report = json.loads(os.read(read, 4096) or b"{}")
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0
        assert report == {
            "running_after_fork": False,
            "running_after_request": True,
            "new_thread": True,
            "sent": report["sent"],
        }
        assert report["sent"] >= 1
        summaries = {body["summary"] for _, _, body in sink.wait_for(2, timeout=5)}
        assert f"pid {pid}" in summaries  # sent by the child's own sender thread
        assert parent_thread.is_alive()
        assert state.ticker.running


@pytest.mark.realtime  # real threads, processes and receivers
def test_a_task_stuck_for_good_does_not_keep_the_process_from_exiting(tmp_path: Path) -> None:
    """A periodic task blocked for ever (a rule on a socket without timeout): the process still
    exits at the end of its script, with or without Observe.shutdown, and prints no
    traceback."""
    script = tmp_path / "stuck.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, threading, time
            from flask import Flask
            from flask_observe import Observe
            from flask_observe.alerting import CheckRule, RuleEngine
            from flask_observe.state import current_state

            app = Flask("stuck")
            app.config.update(
                OBSERVE_LOG_STDOUT=False,
                OBSERVE_SAMPLE_INTERVAL_SECONDS=0.05,
                OBSERVE_ALERT_CHANNELS=[{"type": "webhook", "url": "http://127.0.0.1:9/h"}],
                OBSERVE_ALERT_ALLOW_HTTP=True,
                OBSERVE_ALERT_ALLOW_HOSTS=["127.0.0.1"],
            )
            observe = Observe(app)
            forever = threading.Event()
            current_state(app).get(RuleEngine).add(CheckRule("Stuck", lambda: forever.wait()))
            app.test_client().get("/")
            time.sleep(0.3)
            if sys.argv[1:] == ["shutdown"]:
                observe.shutdown(app)
            print("done", flush=True)
            """
        )
    )
    for args in ([], ["shutdown"]):
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(script), *args],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        assert result.stdout.strip() == "done", result
        assert result.returncode == 0, result
        assert time.monotonic() - started < 10
        assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.realtime  # real threads, processes and receivers
def test_queued_alerts_are_sent_when_the_process_exits_normally(tmp_path: Path) -> None:
    """An alert queued just before a normal exit (a worker's graceful stop) still reaches a
    receiver that takes half a second to answer; the exit waits for it, not longer than 2 s."""
    with Sink(lambda n: (time.sleep(0.5), (200, {}))[1]) as sink:
        script = tmp_path / "exit.py"
        script.write_text(
            textwrap.dedent(
                f"""
                from flask import Flask
                from flask_observe import Observe
                from flask_observe.alerting import Alert, AlertRouter
                from flask_observe.state import current_state

                app = Flask("exiting")
                app.config.update(
                    OBSERVE_LOG_STDOUT=False,
                    OBSERVE_ALERT_CHANNELS=[{{"type": "webhook", "url": "{sink.url}/h"}}],
                    OBSERVE_ALERT_ALLOW_HTTP=True,
                    OBSERVE_ALERT_ALLOW_HOSTS=["127.0.0.1"],
                )
                Observe(app)
                current_state(app).get(AlertRouter).notify(Alert("LastWords", "info"))
                current_state(app).get(AlertRouter).notify(Alert("MoreLastWords", "info"))
                """
            )
        )
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        names = [body["name"] for _, _, body in sink.wait_for(2, timeout=5)]
    assert names == ["LastWords", "MoreLastWords"]
    assert elapsed < 10


@pytest.mark.realtime
def test_rounds_follow_the_tickers_clock_and_a_stuck_task_is_skipped_not_stacked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first round runs at start, each next one ``interval`` after the last ended on the
    ticker's clock; a round waits for its tasks until its deadline (one interval); a task still
    running from an earlier round is skipped (said once per stuck run) while the others go on,
    and runs again once it has returned."""
    clock = WatchedClock()
    ticker = Ticker(15.0, name="flask_observe-test-ticker", clock=clock)
    release = threading.Event()
    calls = {"quick": 0, "stuck": 0}

    def quick() -> None:
        calls["quick"] += 1

    def stuck() -> None:
        calls["stuck"] += 1
        release.wait(30)

    ticker.add("quick", quick)
    ticker.add("stuck", stuck)
    with caplog.at_level(logging.WARNING, logger="flask_observe"):
        ticker.ensure_started()
        try:
            assert wait_for(lambda: calls == {"quick": 1, "stuck": 1}, 5)  # at start
            clock.settle()  # the round has read its deadline (after starting its tasks)
            clock.advance(14.9)
            clock.settle()
            # the round waits for "stuck" until its deadline, and no other round starts
            assert (ticker.rounds, calls) == (0, {"quick": 1, "stuck": 1})
            clock.advance(0.1)
            assert wait_for(lambda: ticker.rounds == 1, 5)
            for rounds in (2, 3):
                clock.advance(15)
                assert wait_for(lambda rounds=rounds: ticker.rounds == rounds, 5)
            assert calls == {"quick": 3, "stuck": 1}
            release.set()
            clock.advance(15)
            assert wait_for(lambda: ticker.rounds == 4, 5)
            assert calls == {"quick": 4, "stuck": 2}
        finally:
            release.set()
            ticker.close()
    skipped = [r for r in caplog.records if "still running from an earlier round" in r.message]
    assert len(skipped) == 1


def test_the_first_round_runs_when_the_ticker_starts_not_a_period_later() -> None:
    """A gauge a task sets (free disk, RSS) must not read 0 for the first period: the first
    round runs at start, though the clock has not moved at all."""
    clock = ManualClock()
    ticker = Ticker(3600.0, clock=clock)
    ran = threading.Event()
    ticker.add("first", ran.set)
    ticker.ensure_started()
    try:
        assert ran.wait(5)
    finally:
        ticker.close()
