"""The sample app as a new user would run it: gunicorn with 2 workers, scraped by the real
Prometheus server; the demo platform breaks and one Slack-format alert reaches a local
receiver, then one resolve when it recovers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sample_app import create_app, observe
from sample_app.platform import create_platform_app

from .alert_sinks import Sink
from .conftest import LiveServer, need_service
from .peers import free_port
from .test_contrib import need_tool

#: Real time and real processes (real gunicorn, a real Prometheus scraping it):
#: CI runs these in a step of their own.
pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/2"
#: Seconds without a successful scrape before NoSuccessfulScrape fires (hours in real life).
STALE = 5.0


class Scheduler:
    """Triggers a scrape every half second, as a cron job or Celery beat would."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        session = requests.Session()
        while not self.stop_event.is_set():
            with contextlib.suppress(requests.RequestException):
                session.post(self.url + "/api/scrapes", timeout=30)
            self.stop_event.wait(0.5)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(35)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class Process:
    def __init__(
        self, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            args,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Demo platform (in-process), Slack receiver, the sample under gunicorn -w 2, Prometheus."""
    need_service("Redis", "127.0.0.1", 6379)
    prometheus = need_tool("prometheus")
    # With its own Observe: the scraper's health check calls the platform's /health/ready.
    platform_app = create_platform_app(OBSERVE_LOG_STDOUT=False)
    processes: list[Process] = []
    with LiveServer(platform_app) as platform, Sink() as slack:
        db = f"sqlite:///{tmp_path / 'scraper.db'}"
        # Seed once here; the workers start with the seeded database.
        seeded = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": db,
                "OBSERVE_LOG_STDOUT": False,
                "OBSERVE_LOG_DIR": str(tmp_path / "logs"),
            }
        )
        observe.shutdown(seeded)
        port = free_port()
        prefix = f"test-sample-{uuid.uuid4().hex}"
        env = {
            "PYTHONPATH": str(ROOT),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
            "FLASK_SQLALCHEMY_DATABASE_URI": db,
            "FLASK_SCRAPER_PLATFORM_URL": platform.url,
            "FLASK_SCRAPER_SEED_DEMO": "false",
            "FLASK_SCRAPER_STALE_HOURS": str(STALE / 3600),
            "FLASK_OBSERVE_LOG_STDOUT": "false",
            "FLASK_OBSERVE_LOG_DIR": str(tmp_path / "logs"),
            "FLASK_OBSERVE_SAMPLE_INTERVAL_SECONDS": "0.25",
            "FLASK_OBSERVE_ALERT_CHANNELS": json.dumps(
                [{"type": "slack", "url": slack.url + "/services/T0/B0/x"}]
            ),
            "FLASK_OBSERVE_ALERT_ALLOW_HTTP": "true",
            "FLASK_OBSERVE_ALERT_ALLOW_HOSTS": "127.0.0.1",
            "FLASK_OBSERVE_ALERT_REDIS_URL": REDIS_URL,
            "FLASK_OBSERVE_ALERT_REDIS_PREFIX": prefix,
            # Resolve after 1 s of passing (4 evaluations), not the default minute.
            "FLASK_OBSERVE_ALERT_RESOLVE_AFTER_SECONDS": "1",
        }
        app_proc = Process(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:flask_observe.contrib.gunicorn",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "sample_app:create_app()",
            ],
            tmp_path / "gunicorn.log",
            env,
            cwd=tmp_path,
        )
        processes.append(app_proc)
        app_url = f"http://127.0.0.1:{port}"
        scheduler = None
        try:
            wait_until(lambda: _get(app_url + "/api/accounts"), 30, "gunicorn to serve")
            scheduler = Scheduler(app_url)
            prom_port = free_port()
            config = tmp_path / "prometheus.yml"
            config.write_text(
                "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                "scrape_configs:\n"
                "  - job_name: scraper\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
            )
            processes.append(
                Process(
                    [
                        prometheus,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                    ],
                    tmp_path / "prometheus.log",
                )
            )
            prom_url = f"http://127.0.0.1:{prom_port}"
            wait_until(lambda: _get(prom_url + "/-/ready"), 30, "prometheus to be ready")
            yield {
                "app": app_url,
                "prometheus": prom_url,
                "platform": platform,
                "slack": slack,
                "tmp": tmp_path,
            }
        finally:
            if scheduler is not None:
                scheduler.stop()
            for proc in reversed(processes):
                proc.stop()
            observe.shutdown(platform_app)
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = client.keys(f"{prefix}:*")
            if keys:
                client.delete(*keys)
            client.close()


def _get(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    body = requests.get(prom + "/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def chaos(platform: LiveServer, failure_rate: float) -> None:
    response = requests.put(
        platform.url + "/admin/chaos", json={"failure_rate": failure_rate}, timeout=5
    )
    assert response.status_code == 200


@pytest.mark.services
def test_prometheus_scrapes_gunicorn_and_one_alert_then_one_resolve(stack: dict[str, Any]) -> None:
    """The scheduler scrapes every half second throughout (healthy: 5 of 6 accounts succeed,
    the ghost account always fails). Prometheus sees the RED and business series summed over
    both workers; breaking the platform gives one Slack alert per incident (no successful
    scrape; the platform's circuit breaker open), recovering one resolve of each."""
    _app, prom, slack = stack["app"], stack["prometheus"], stack["slack"]

    wait_until(lambda: query(prom, 'up{job="scraper"} == 1'), 30, "the target to be up")
    wait_until(
        lambda: query(
            prom, 'sum(http_requests_total{job="scraper", route="/api/scrapes", status="201"}) >= 3'
        ),
        30,
        "http_requests_total for /api/scrapes",
    )
    wait_until(
        lambda: query(prom, 'sum(scraper_accounts_scraped_total{status="ok"}) >= 15'),
        30,
        "the business counter",
    )
    for expr in (
        'http_request_duration_seconds_bucket{route="/api/scrapes", le="+Inf"}',
        "scraper_last_success_timestamp_seconds",
        'scraper_followers{platform="twitter", handle="nasa"}',
        "flask_observe_memory_rss_bytes",
        'http_request_db_queries_count{route="/api/scrapes"}',
        'slo_error_budget_remaining_ratio{slo="availability"}',
        'flask_observe_health_check_status{check="db", critical="true"} == 0',
        'flask_observe_circuit_breaker_state{breaker="platform-api"} == 0',
    ):
        assert wait_until(lambda expr=expr: query(prom, expr), 30, expr)
    assert slack.received == []  # healthy: nothing to say
    # Break the platform: scrapes keep running but no account succeeds any more.
    chaos(stack["platform"], 1.0)
    broken_since = time.monotonic()

    def firing() -> list[Any]:
        return [b for _, _, b in slack.received if "NoSuccessfulScrape" in b["text"]]

    wait_until(firing, 30, "the NoSuccessfulScrape alert")
    assert time.monotonic() - broken_since >= STALE - 1.0  # last success was up to ~1 s earlier
    time.sleep(2.0)  # both workers keep evaluating: still one notification
    alerts = firing()
    assert len(alerts) == 1
    assert alerts[0]["text"].startswith(
        "[CRITICAL] NoSuccessfulScrape (scraper): no account scraped successfully"
    )
    assert alerts[0]["attachments"][0]["color"] == "#b00020"

    # Recover: the next scheduled scrape succeeds and one resolve arrives.
    chaos(stack["platform"], 0.0)

    def resolved() -> list[Any]:
        return [b for b in firing() if b["text"].startswith("[RESOLVED] NoSuccessfulScrape")]

    # The sample's circuit breaker opened while the platform was down (5 failures) and lets a
    # trial call through after its 30 s reset timeout: the first success comes then.
    wait_until(resolved, 60, "the resolve")
    # Prometheus saw the breaker open (2) while the platform was down.
    assert query(
        prom, 'max_over_time(flask_observe_circuit_breaker_state{breaker="platform-api"}[5m]) == 2'
    )
    time.sleep(2.0)
    texts = [b["text"] for b in firing()]
    assert len(texts) == 2, texts
    assert texts[1].startswith("[RESOLVED] NoSuccessfulScrape (scraper)")
    # The other incident of the outage, the platform's circuit breaker opening in the workers,
    # was also notified once and resolved once; nothing else was sent.
    breaker = [b["text"] for _, _, b in slack.received if "CircuitBreakerOpen" in b["text"]]
    assert [t.split(":")[0] for t in breaker] == [
        "[ERROR] CircuitBreakerOpen (scraper)",
        "[RESOLVED] CircuitBreakerOpen (scraper)",
    ], breaker
    assert len(slack.received) == 4, [b["text"] for _, _, b in slack.received]
