"""What a small production setup runs, all real, on loopback (issue 12's end-to-end proof).

- Alerting: two instances of the sample app, each under gunicorn; a real Prometheus scraping
  both with the rules ``flask observe alerts prometheus-rules`` renders; a real Alertmanager
  with the shipped ``alertmanager.yml`` (its receivers pointed at a local webhook); the in-app
  ``alertmanager`` channel in both instances. Breaking the demo platform opens each instance's
  circuit breaker: one notification for the incident reaches the receiver (both instances and
  the Prometheus rule grouped), then one resolved when it recovers.
- OTLP: the sample app under gunicorn sends traces, logs and metrics to the OTLP receiver,
  directly and through a real collector (Rotel) when it runs here; one request's span, log
  records and metric exemplars carry the same trace ID.

The test copies shorten what a test cannot wait for (the rule's ``for:``, Alertmanager's group
timings, the breaker's reset); the shipped files are used as they are otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from sample_app import create_app, observe
from sample_app.platform import create_platform_app

from .alert_sinks import Sink
from .alertmanager_peer import running_alertmanager, webhook_variant
from .collector_peer import rotel_binary, rotel_collector
from .conftest import LiveServer
from .peers import OtlpReceiver, free_port
from .test_contrib import need_tool
from .test_prometheus_integration import Process, chaos, query, wait_until

pytestmark = [pytest.mark.realtime, pytest.mark.services]

ROOT = Path(__file__).resolve().parent.parent
INCIDENT = "FlaskObserveCircuitBreakerOpen"
#: Alertmanager's timings in the test's copy of the shipped file: every alert of the incident
#: (two instances, Prometheus) arrives within a few seconds, well inside ``group_wait``.
GROUP_WAIT, GROUP_INTERVAL = 10.0, 20.0
BREAKER_RESET = 3.0


def _serving(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def seed(db: str, tmp_path: Path) -> None:
    """Seed the shared database once; the workers start with it."""
    seeded = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db,
            "OBSERVE_LOG_STDOUT": False,
            "OBSERVE_LOG_DIR": str(tmp_path / "seed-logs"),
        }
    )
    observe.shutdown(seeded)


def gunicorn(port: int, env: dict[str, str], workdir: Path, name: str) -> Process:
    workdir.mkdir(parents=True, exist_ok=True)
    return Process(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:flask_observe.contrib.gunicorn",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "sample_app:create_app()",
        ],
        workdir / f"{name}.log",
        env,
        cwd=workdir,
    )


def sample_env(tmp_path: Path, db: str, platform: str, name: str, **extra: str) -> dict[str, str]:
    (tmp_path / name / "prom").mkdir(parents=True, exist_ok=True)
    return {
        "PYTHONPATH": str(ROOT),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / name / "prom"),
        "FLASK_SQLALCHEMY_DATABASE_URI": db,
        "FLASK_SCRAPER_PLATFORM_URL": platform,
        "FLASK_SCRAPER_SEED_DEMO": "false",
        "FLASK_SCRAPER_BREAKER_RESET_SECONDS": str(BREAKER_RESET),
        "FLASK_OBSERVE_LOG_STDOUT": "false",
        "FLASK_OBSERVE_LOG_DIR": str(tmp_path / name / "logs"),
        "GRPC_VERBOSITY": "ERROR",
        **extra,
    }


def render_rules(tmp_path: Path, db: str, platform: str) -> dict[str, Any]:
    """The rules as the command renders them for the sample (``job="scraper"``), with the
    incident's ``for:`` shortened in the test's copy."""
    out = tmp_path / "rules.yml"
    env = {**os.environ, **sample_env(tmp_path, db, platform, "cli")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "sample_app:create_app()",
            "observe",
            "alerts",
            "prometheus-rules",
            "-o",
            str(out),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules: dict[str, Any] = yaml.safe_load(out.read_text("utf-8"))
    found = [
        rule
        for group in rules["groups"]
        for rule in group["rules"]
        if rule.get("alert") == INCIDENT
    ]
    assert len(found) == 1, "the rendered rules have no breaker alert"
    assert found[0]["labels"]["service"] == "scraper"
    found[0]["for"] = "1s"
    return rules


class Scheduler:
    """POSTs a scrape to each instance every half second while running (a cron job)."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        session = requests.Session()
        while not self.stopped.is_set():
            if self.running.wait(0.1):
                for url in self.urls:
                    with contextlib.suppress(requests.RequestException):
                        session.post(url + "/api/scrapes", timeout=30)
                self.stopped.wait(0.5)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(35)


def test_one_incident_two_instances_both_paths_one_notification_then_one_resolved(
    tmp_path: Path,
) -> None:
    prometheus = need_tool("prometheus")
    platform_app = create_platform_app(OBSERVE_LOG_STDOUT=False)
    processes: list[Process] = []
    timings = {
        "group_wait": f"{GROUP_WAIT:g}s",
        "group_interval": f"{GROUP_INTERVAL:g}s",
        "repeat_interval": "1h",
    }
    with LiveServer(platform_app) as platform, Sink() as sink:
        config = webhook_variant(sink.url, timings=timings)
        with running_alertmanager(config, tmp_path / "am") as manager:
            db = f"sqlite:///{tmp_path / 'scraper.db'}"
            seed(db, tmp_path)
            ports = {"scraper-a": free_port(), "scraper-b": free_port()}
            urls = [f"http://127.0.0.1:{port}" for port in ports.values()]
            scheduler: Scheduler | None = None
            try:
                for name, port in ports.items():
                    channel = {
                        "type": "alertmanager",
                        "url": manager.url,
                        "instance": name,
                        "resend_seconds": 2,
                    }
                    env = sample_env(
                        tmp_path,
                        db,
                        platform.url,
                        name,
                        FLASK_OBSERVE_SAMPLE_INTERVAL_SECONDS="0.25",
                        FLASK_OBSERVE_ALERT_CHANNELS=json.dumps([channel]),
                        FLASK_OBSERVE_ALERT_ALLOW_HTTP="true",
                        FLASK_OBSERVE_ALERT_ALLOW_HOSTS="127.0.0.1",
                        FLASK_OBSERVE_ALERT_RESOLVE_AFTER_SECONDS="1",
                    )
                    processes.append(gunicorn(port, env, tmp_path / name, name))
                for url in urls:
                    wait_until(lambda url=url: _serving(url + "/api/accounts"), 60, url)
                rules = tmp_path / "prometheus-rules.yml"
                rules.write_text(yaml.safe_dump(render_rules(tmp_path, db, platform.url)))
                prom_port = free_port()
                prom_config = tmp_path / "prometheus.yml"
                targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports.values())
                am_host = manager.url.split("://", 1)[1]
                prom_config.write_text(
                    "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    f"rule_files: ['{rules}']\n"
                    "alerting:\n"
                    f"  alertmanagers: [{{static_configs: [{{targets: ['{am_host}']}}]}}]\n"
                    "scrape_configs:\n"
                    "  - job_name: scraper\n"
                    f"    static_configs: [{{targets: [{targets}]}}]\n"
                )
                processes.append(
                    Process(
                        [
                            prometheus,
                            f"--config.file={prom_config}",
                            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                            f"--web.listen-address=127.0.0.1:{prom_port}",
                            "--rules.alert.resend-delay=1s",
                        ],
                        tmp_path / "prometheus.log",
                    )
                )
                prom = f"http://127.0.0.1:{prom_port}"
                wait_until(lambda: _serving(prom + "/-/ready"), 30, "prometheus")
                scheduler = Scheduler(urls)
                scheduler.running.set()
                wait_until(
                    lambda: (
                        len(
                            query(
                                prom,
                                'flask_observe_circuit_breaker_state{breaker="platform-api"} == 0',
                            )
                        )
                        == 2
                    ),
                    60,
                    "both instances scraped, their breakers closed",
                )
                assert not incident(sink), "healthy: nothing to say"

                # Break the platform: the next scrapes fail and open each breaker; then the
                # scrapes stop, so the breakers stay open (no trial call) until recovery.
                chaos(platform, 1.0)
                wait_until(
                    lambda: (
                        len(
                            query(
                                prom,
                                'flask_observe_circuit_breaker_state{breaker="platform-api"} == 2',
                            )
                        )
                        == 2
                    ),
                    30,
                    "both breakers open",
                )
                scheduler.running.clear()
                first = wait_until(lambda: incident(sink), GROUP_WAIT + 30, "the notification")
                noticed = time.monotonic()
                (firing,) = first
                assert firing["status"] == "firing"
                assert firing["receiver"] == "slack"  # severity error, as routed
                alerts = firing["alerts"]
                instances = sorted(
                    a["labels"].get("instance", "") for a in alerts if "pid" in a["labels"]
                )
                assert instances == ["scraper-a", "scraper-b"], alerts
                from_prometheus = [a for a in alerts if a["labels"].get("job") == "scraper"]
                assert len(from_prometheus) == 1, alerts
                assert from_prometheus[0]["labels"]["breaker"] == "platform-api"
                assert {a["labels"]["service"] for a in alerts} == {"scraper"}
                assert all(
                    a["annotations"]["runbook_url"].endswith(f"/{INCIDENT}.md") for a in alerts
                )

                # Recover just after one of Alertmanager's group ticks (they come every
                # group_interval after the first notification), so that every alert of the
                # incident resolves before the next tick: one resolved notification.
                time.sleep(GROUP_INTERVAL - (time.monotonic() - noticed) % GROUP_INTERVAL + 1.0)
                chaos(platform, 0.0)
                scheduler.running.set()
                wait_until(
                    lambda: (
                        len(
                            query(
                                prom,
                                'flask_observe_circuit_breaker_state{breaker="platform-api"} == 0',
                            )
                        )
                        == 2
                    ),
                    GROUP_INTERVAL / 2,
                    "both breakers closed again",
                )
                resolved = wait_until(
                    lambda: incident(sink)[1:], GROUP_INTERVAL + 15, "the resolved notification"
                )
                assert [n["status"] for n in resolved] == ["resolved"], resolved
                assert {a["status"] for a in resolved[0]["alerts"]} == {"resolved"}
                assert len(resolved[0]["alerts"]) == 3
                time.sleep(GROUP_INTERVAL + 2)  # a tick later, still nothing more
                assert len(incident(sink)) == 2, [n["status"] for n in incident(sink)]
            finally:
                if scheduler is not None:
                    scheduler.stop()
                for proc in reversed(processes):
                    proc.stop()
                observe.shutdown(platform_app)


def incident(sink: Sink) -> list[dict[str, Any]]:
    """The notifications Alertmanager sent for the incident's group, in order."""
    return [
        body
        for _, _, body in list(sink.received)
        if isinstance(body, dict) and body.get("groupLabels", {}).get("alertname") == INCIDENT
    ]


# -- OTLP: the three signals of one request ----------------------------------------------------


@pytest.fixture(params=["direct", "rotel"])
def otlp_endpoint(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, OtlpReceiver]]:
    with OtlpReceiver() as receiver:
        if request.param == "direct":
            yield receiver.endpoint, receiver
            return
        rotel_binary()
        with rotel_collector(receiver.endpoint, tmp_path / "rotel") as collector:
            yield collector.grpc_endpoint, receiver


def test_one_requests_span_log_records_and_metric_exemplars_share_its_trace_id(
    otlp_endpoint: tuple[str, OtlpReceiver], tmp_path: Path
) -> None:
    """The sample under gunicorn with OTEL_*_EXPORTER=otlp and one endpoint: POST
    /api/scrapes is one trace (server span, the platform calls), its log lines (the scrape's
    and the access line) carry its trace ID, and so do the exemplars of its
    http.server.request.duration and http.client.request.duration points; the three signals
    have the same service resource."""
    endpoint, receiver = otlp_endpoint
    platform_app = create_platform_app(OBSERVE_LOG_STDOUT=False)
    with LiveServer(platform_app) as platform:
        db = f"sqlite:///{tmp_path / 'scraper.db'}"
        seed(db, tmp_path)
        port = free_port()
        env = sample_env(
            tmp_path,
            db,
            platform.url,
            "otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_METRIC_EXPORT_INTERVAL="500",
            OTEL_BSP_SCHEDULE_DELAY="200",
            OTEL_BLRP_SCHEDULE_DELAY="200",
            FLASK_OBSERVE_TRACING_SAMPLE_RATE="1.0",
        )
        proc = gunicorn(port, env, tmp_path / "otlp", "otlp")
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: _serving(url + "/api/accounts"), 60, "gunicorn")
            response = requests.post(
                url + "/api/scrapes",
                json={"platform": "twitter"},
                timeout=30,
                headers={"X-Request-ID": "e2e-otlp-request"},
            )
            assert response.status_code == 201, response.text

            def server_span() -> dict[str, Any] | None:
                return next(
                    (
                        s
                        for s in receiver.spans()
                        if s["kind"] == "SERVER"
                        and s["attributes"].get("http.route") == "/api/scrapes"
                    ),
                    None,
                )

            span = wait_until(server_span, 30, "the request's server span")
            trace_id = span["trace_id"]

            def exemplars(name: str) -> set[str]:
                return {
                    e["trace_id"]
                    for p in receiver.metric_points()
                    if p["name"] == name
                    for e in p.get("exemplars", [])
                }

            wait_until(
                lambda: trace_id in exemplars("http.server.request.duration"), 30, "exemplar"
            )
            wait_until(lambda: trace_id in exemplars("http.client.request.duration"), 30, "client")

            def lines() -> list[dict[str, Any]]:
                return [r for r in receiver.log_records() if r["trace_id"] == trace_id]

            records = wait_until(
                lambda: [r for r in lines() if r["scope"] == "flask_observe.access"] and lines(),
                30,
                "the request's log lines",
            )
        finally:
            proc.stop()
            observe.shutdown(platform_app)
    assert len(records) >= 2, [r["body"] for r in records]
    assert {r["attributes"].get("correlation_id") for r in records} == {"e2e-otlp-request"}
    access = next(r for r in records if r["scope"] == "flask_observe.access")
    assert access["body"] == "POST /api/scrapes 201"
    services = {span["service"], access["service"]}
    services |= {p["service"] for p in receiver.metric_points()}
    assert services == {"scraper"}
