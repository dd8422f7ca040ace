"""The background sampler and the alert sender: started lazily in each process (so a forked
gunicorn worker runs its own), and stopped by ``Observe.shutdown(app)``."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

from flask import Flask

from flask_observe import Observe
from flask_observe.alerting import Alert, CheckRule

from .alert_sinks import Sink


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


def test_shutdown_stops_the_sampler_and_the_alert_sender(make_app: Callable[..., Flask]) -> None:
    """After Observe.shutdown(app) the sampler thread, its pool and the sender thread are gone,
    and a request to the (unwrapped) app starts nothing again."""
    with Sink() as sink:
        app = alerting_app(make_app, sink, "stops")
        state = Observe.state(app)
        assert state.ticker is not None
        assert state.alerts is not None
        before = set(threads("flask_observe-"))
        app.test_client().get("/health/live")
        assert state.ticker.running
        state.alerts.notify(Alert("Started", "info"))
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
        assert state.alerts.notify(Alert("AfterShutdown", "info")) is False


def test_a_forked_child_runs_its_own_sampler_and_sender(make_app: Callable[..., Flask]) -> None:
    """The parent's threads do not survive fork (gunicorn workers, --preload): the child's first
    request starts a sampler of its own, whose rules alert through a sender thread of the
    child's; the parent's keep running."""
    with Sink() as sink:
        app = alerting_app(make_app, sink, "forks")
        state = Observe.state(app)
        assert state.ticker is not None
        assert state.rules is not None
        state.rules.rules.clear()
        state.rules.add(CheckRule("FromPid", lambda: f"pid {os.getpid()}", severity="info"))
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
                router = state.alerts
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
