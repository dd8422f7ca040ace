"""The overview, alerts and health history pages over HTTP (in-process): behind the sign-in,
the figures of the requests the app served, the windows and ranges, the Prometheus charts
and their failure, each text escaped."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_observe import ConfigError, Observe
from flask_observe.alerting import Alert, AlertRouter
from flask_observe.console.overview import OverviewData
from flask_observe.console.store import FILE_NAME
from flask_observe.health.checks import CheckFailed, FunctionCheck

from .alert_sinks import Sink
from .conftest import HungServer

TOKEN = "console-nc4wYYxi2uxLGs9du5oF_uNr"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = "/observe/console"
HOSTILE = "<img src=x onerror=alert(1)>\"'&"


@pytest.fixture
def console_app(make_app: Callable[..., Flask], tmp_path: Path) -> Callable[..., Flask]:
    def factory(**config: Any) -> Flask:
        settings: dict[str, Any] = {
            "log_stdout": False,
            "log_dir": str(tmp_path / "logs"),
            "logviewer_enabled": True,
            "auth_token": TOKEN,
        }
        settings.update(config)
        app = make_app("overviewapp", **settings)

        @app.get("/work/<int:n>")
        def work(n: int) -> tuple[str, int]:
            return "done", 500 if n % 5 == 0 else 200

        return app

    return factory


def _data(app: Flask) -> OverviewData:
    data = Observe.find(OverviewData, app)
    assert data is not None
    return data


def _get(client: Any, path: str, **kwargs: Any) -> Any:
    response = client.get(path, headers=AUTH, **kwargs)
    response.close()  # the request hooks (the rollups) run when the body is closed
    return response


def test_the_pages_need_the_sign_in(console_app: Callable[..., Flask]) -> None:
    client = console_app().test_client()
    for path in ("overview", "overview/data.json", "alerts", "health", "static/overview.css"):
        assert client.get(f"{BASE}/{path}").status_code == 401, path
        assert _get(client, f"{BASE}/{path}").status_code == 200, path
    assert client.get(BASE, headers=AUTH).headers["Location"] == f"{BASE}/overview"


def test_the_overview_counts_what_the_app_served(console_app: Callable[..., Flask]) -> None:
    app = console_app()
    client = app.test_client()
    for n in range(50):
        _get(client, f"/work/{n}")
    _get(client, "/nothing-here")
    _get(client, f"{BASE}/overview")  # the console's own pages stay out
    _data(app).rollups.flush()
    body = _get(client, f"{BASE}/overview/data.json?window=5m").get_json()
    rows = {row["name"]: row for row in body["route"]}
    assert set(rows) == {"/work/<int:n>", "<unmatched>"}
    assert (rows["/work/<int:n>"]["count"], rows["/work/<int:n>"]["errors"]) == (50, 10)
    assert rows["<unmatched>"]["errors"] == 0
    page = _get(client, f"{BASE}/overview?window=24h&range=day").get_data(as_text=True)
    row = re.search(r'<tr data-name="/work/&lt;int:n&gt;">(.*?)</tr>', page, re.S)
    assert row is not None
    assert '<td class="num count">50</td>' in row[1]
    assert '<td class="num ratio bad">20.00 %</td>' in row[1]
    assert page.count("<svg") == 3
    assert "last day" in page
    assert 'aria-current="page">last 24 hours' in page
    assert _get(client, f"{BASE}/overview?window=7d").status_code == 400
    assert _get(client, f"{BASE}/overview?range=year").status_code == 400


def test_the_store_is_in_the_console_directory(
    console_app: Callable[..., Flask], tmp_path: Path
) -> None:
    app = console_app(console_dir=str(tmp_path / "console"))
    assert _data(app).rollups.db.path == tmp_path / "console" / FILE_NAME
    other = console_app(console_rollups=False)
    client = other.test_client()
    _get(client, "/work/1")
    _data(other).rollups.flush()
    assert _get(client, f"{BASE}/overview/data.json").get_json()["route"] == []


def test_alerts_and_health_history_pages_show_what_happened_escaped(
    console_app: Callable[..., Flask],
) -> None:
    """An alert whose text is hostile, fired and resolved, sent to a webhook; a check
    failing with hostile output: the pages show both, every text escaped."""
    with Sink() as sink:
        failing = {"now": False}

        def platform() -> None:
            if failing["now"]:
                raise CheckFailed(f"platform down {HOSTILE}")

        app = console_app(
            alert_channels=[{"type": "webhook", "url": sink.url + "/hook"}],
            alert_allow_http=True,
            alert_allow_hosts=["127.0.0.1"],
        )
        from flask_observe.health.runner import HealthRunner

        runner = Observe.find(HealthRunner, app)
        assert runner is not None
        runner.add(FunctionCheck("platform", critical=False, func=platform))
        router = Observe.find(AlertRouter, app)
        assert router is not None
        data = _data(app)
        with app.app_context():
            runner.run(fresh=True)
            failing["now"] = True
            runner.run(fresh=True)
            failing["now"] = False
            runner.run(fresh=True)
        router.notify(Alert("Scrape<Stalled>", "critical", summary=f"no scrape {HOSTILE}"))
        sink.wait_for(1)
        assert router.flush(5)
        router.notify(Alert("Scrape<Stalled>", "critical", status="resolved", summary="ok"))
        sink.wait_for(2)
        assert router.flush(5)
        data.history.flush()
        client = app.test_client()
        alerts = _get(client, f"{BASE}/alerts").get_data(as_text=True)
        health = _get(client, f"{BASE}/health?check=platform").get_data(as_text=True)
        overview = _get(client, f"{BASE}/overview").get_data(as_text=True)
    assert "Scrape&lt;Stalled&gt;" in alerts
    assert "no scrape &lt;img src=x onerror=alert(1)&gt;&#34;&#39;&amp;" in alerts
    assert 'class="badge ok status">resolved' in alerts
    assert alerts.count('<span class="badge ok">sent</span>') == 2  # firing and resolved
    assert "platform down &lt;img" in health
    assert health.index("fail</span>") > health.index("pass</span>")  # newest first
    for page in (alerts, health, overview):
        assert "<img src=x" not in page
    assert "Scrape&lt;Stalled&gt;" in overview
    firing = _get(client, f"{BASE}/alerts?state=firing").get_data(as_text=True)
    assert "No alert is firing" in firing


@pytest.mark.realtime  # the deadline on the wall clock
def test_a_prometheus_that_hangs_is_said_on_the_page_and_the_rollups_drawn(
    console_app: Callable[..., Flask],
) -> None:
    with HungServer() as hung:
        app = console_app(
            console_prometheus_url=f"http://127.0.0.1:{hung.port}",
            console_prometheus_timeout_seconds=0.3,
        )
        page = _get(app.test_client(), f"{BASE}/overview").get_data(as_text=True)
    assert "could not be read from Prometheus" in page
    assert "did not answer within 0.3 s" in page
    assert page.count("<svg") == 3
    assert "this host&#39;s rollups" in page


def test_prometheus_settings_are_checked(console_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigError, match="OBSERVE_CONSOLE_PROMETHEUS_URL"):
        console_app(console_prometheus_url="file:///etc/passwd")
    with pytest.raises(ConfigError, match="OBSERVE_CONSOLE_PROMETHEUS_SELECTOR"):
        console_app(console_prometheus_selector='job="x"} or vector(1)')


@pytest.mark.realtime
@pytest.mark.services
def test_celery_task_runs_in_a_real_worker_reach_the_overview(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks published here run in a prefork Celery worker (another process): its rollups
    reach the host's store, and the overview's Celery table counts each run and failure."""
    import os
    import sys
    import time
    import uuid

    from .conftest import need_service
    from .peers import celery_worker, stop_process

    need_service("Redis", "127.0.0.1", 6379)
    env = {
        "OBSERVE_TEST_BROKER": "redis://127.0.0.1:6379/9",
        "OBSERVE_TEST_LOG_DIR": str(tmp_path / "logs"),
        "OBSERVE_TEST_QUEUE": f"flask-observe-console-{uuid.uuid4().hex[:8]}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("tests.apps.console_celery_app", None)
    from tests.apps import console_celery_app as module

    root = Path(__file__).resolve().parent.parent
    worker_env = dict(os.environ, PYTHONPATH=str(root), **env)
    target = "tests.apps.console_celery_app:celery"
    try:
        with celery_worker(target, env["OBSERVE_TEST_QUEUE"], env=worker_env) as worker:
            for account in ("nasa", "github", "ghost_account", "bbc"):
                module.scrape_account.delay(account)
            data = _data(module.app)
            deadline = time.monotonic() + 60
            rows: list[Any] = []
            while time.monotonic() < deadline and worker.poll() is None:
                rows = data.rollups.table("task", 300)
                if rows and rows[0].count == 4:
                    break
                time.sleep(0.2)
            if not rows or rows[0].count != 4:
                pytest.fail(f"the task runs never reached the store: {stop_process(worker)}")
        client = module.app.test_client()
        token = module.app.config["OBSERVE_AUTH_TOKEN"]
        answer = client.get(
            f"{BASE}/overview?window=5m", headers={"Authorization": f"Bearer {token}"}
        )
        page = answer.get_data(as_text=True)
    finally:
        module.observe.shutdown(module.app)
    (row,) = rows
    assert (row.name, row.count, row.errors) == ("tests.scrape_account", 4, 1)
    assert row.p50 is not None
    assert 'id="table-task"' in page
