"""The shipped example ``alertmanager.yml``, checked by the real tools: ``amtool check-config``
and ``amtool config routes test`` on the file itself, and a real Alertmanager (Debian's
``prometheus-alertmanager``) grouping, resolving, inhibiting and rendering with it."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml

from .alert_sinks import Sink
from .alertmanager_peer import (
    SHIPPED_CONFIG,
    need_alertmanager,
    notifications,
    rfc3339,
    running_alertmanager,
    webhook_variant,
    with_timings,
)
from .peers import free_port, wait_for

pytestmark = [pytest.mark.services, pytest.mark.realtime]

#: Short enough for a test, and the same relations as the shipped ones.
FAST = {"group_wait": "1s", "group_interval": "2s", "repeat_interval": "1h"}


def alert(name: str, severity: str, instance: str, ends_in: float, **labels: str) -> dict[str, Any]:
    """One alert as a Prometheus or the in-app channel posts it."""
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "labels": {
            "alertname": name,
            "severity": severity,
            "service": "social-scraper",
            "instance": instance,
            **labels,
        },
        "annotations": {
            "summary": f"{name} on {instance}",
            "runbook_url": f"https://runbooks.example.com/{name}",
        },
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + dt.timedelta(seconds=ends_in)),
        "generatorURL": f"http://{instance}/health",
    }


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as receiver:
        yield receiver


@pytest.mark.realtime
def test_amtool_accepts_the_shipped_config() -> None:
    """``amtool check-config`` accepts the file, with its three receivers and two inhibit
    rules."""
    _, amtool = need_alertmanager()
    result = subprocess.run(
        [amtool, "check-config", str(SHIPPED_CONFIG)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output
    assert "3 receivers" in output
    assert "2 inhibit rules" in output


@pytest.mark.realtime
@pytest.mark.parametrize(
    ("severity", "receiver"),
    [("critical", "pagerduty"), ("error", "slack"), ("warning", "email"), ("info", "email")],
)
def test_amtool_routes_each_severity_to_one_receiver(severity: str, receiver: str) -> None:
    """``amtool config routes test``: each severity reaches exactly one receiver (one
    incident, one notification), criticals page."""
    _, amtool = need_alertmanager()
    result = subprocess.run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={SHIPPED_CONFIG}",
            "alertname=FlaskObserveTargetDown",
            "service=social-scraper",
            f"severity={severity}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_shipped_config_keeps_secrets_in_files() -> None:
    """No secret is inline: Slack's URL, PagerDuty's key and the SMTP password come from
    ``*_file`` fields, and no field named like a secret holds a value."""
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    secret_keys = {
        "api_url",
        "slack_api_url",
        "routing_key",
        "service_key",
        "auth_password",
        "smtp_auth_password",
        "auth_secret",
        "smtp_auth_secret",
        "url",
    }

    def walk(node: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield key, value
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    keys = dict(walk(config))
    assert not secret_keys & set(keys), secret_keys & set(keys)
    assert keys["smtp_auth_password_file"].startswith("/etc/alertmanager/secrets/")
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["slack"]["slack_configs"][0]["api_url_file"]
    assert receivers["pagerduty"]["pagerduty_configs"][0]["routing_key_file"]
    assert config["route"]["group_by"] == ["alertname", "service"]


@pytest.mark.realtime
def test_two_instances_firing_one_alert_make_one_notification_then_one_resolved(
    sink: Sink, tmp_path: Path
) -> None:
    """The same alert posted by two instances (different ``instance`` labels) reaches the
    receiver as one grouped notification listing both; once their ``endsAt`` passes, one
    resolved notification follows, and nothing else."""
    config = webhook_variant(sink.url, timings=FAST)
    with running_alertmanager(config, tmp_path / "am") as am:
        first = alert("FlaskObserveTargetDown", "critical", "scraper-1:8000", ends_in=5)
        second = alert("FlaskObserveTargetDown", "critical", "scraper-2:8000", ends_in=5)
        assert am.post_alerts([first]) == 200
        assert am.post_alerts([second]) == 200

        got = wait_for(lambda: notifications(sink, "pagerduty"), timeout=15)
        assert len(got) == 1, am.output()
        firing = got[0]
        assert firing["status"] == "firing"
        assert firing["receiver"] == "pagerduty"
        assert firing["groupLabels"] == {
            "alertname": "FlaskObserveTargetDown",
            "service": "social-scraper",
        }
        assert sorted(a["labels"]["instance"] for a in firing["alerts"]) == [
            "scraper-1:8000",
            "scraper-2:8000",
        ]

        resolved = wait_for(lambda: notifications(sink, "pagerduty")[1:], timeout=20)
        assert len(resolved) == 1, am.output()
        assert resolved[0]["status"] == "resolved"
        assert {a["status"] for a in resolved[0]["alerts"]} == {"resolved"}
        assert len(resolved[0]["alerts"]) == 2
        time.sleep(4.5)  # two more group intervals: no repeat, no other receiver
        assert [n["status"] for n in notifications(sink, "pagerduty")] == ["firing", "resolved"]
        assert [path for _, path, _ in sink.received] == ["pagerduty", "pagerduty"]


@pytest.mark.realtime
def test_a_critical_inhibits_the_warning_of_the_same_alert_and_service(
    sink: Sink, tmp_path: Path
) -> None:
    """While ``X`` is critical for a service, ``X``'s warning for that service is not sent;
    the same warning of another service is."""
    config = webhook_variant(sink.url, timings=FAST)
    with running_alertmanager(config, tmp_path / "am") as am:
        name = "FlaskObserveAvailabilityErrorBudgetBurnFast"
        am.post_alerts([alert(name, "critical", "scraper-1:8000", ends_in=60)])
        # Alertmanager inhibits only by alerts it already holds: the critical first.
        assert wait_for(lambda: am.alerts(), timeout=5)
        am.post_alerts(
            [
                alert(name, "warning", "scraper-1:8000", ends_in=60),
                alert(name, "warning", "billing-1:8000", ends_in=60, service="billing"),
            ]
        )
        assert wait_for(lambda: notifications(sink, "pagerduty"), timeout=15)
        assert wait_for(lambda: notifications(sink, "email"), timeout=15), am.output()
        time.sleep(3)  # a full group interval more: the inhibited one stays away
        emails = notifications(sink, "email")
        assert len(emails) == 1, am.output()
        assert [a["labels"]["service"] for a in emails[0]["alerts"]] == ["billing"]
        suppressed = [
            a
            for a in am.alerts()
            if a["labels"]["severity"] == "warning" and a["labels"]["service"] == "social-scraper"
        ]
        assert [a["status"]["state"] for a in suppressed] == ["suppressed"]


@dataclass
class SmtpSink:
    port: int
    messages: list[Message]


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on loopback and the messages it received."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message as MessageHandler

    messages: list[Message] = []

    class Keep(MessageHandler):  # type: ignore[misc]
        def handle_message(self, message: Message) -> None:
            messages.append(message)

    port = free_port()
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpSink(port, messages)
    finally:
        controller.stop()


@pytest.mark.realtime
def test_the_shipped_receivers_render_and_read_their_secrets_from_files(
    sink: Sink, smtp: SmtpSink, tmp_path: Path
) -> None:
    """The shipped Slack, PagerDuty and email receivers themselves (their templates, secrets
    from files) sent by a real Alertmanager to local stand-ins: Slack's webhook URL and
    PagerDuty's routing key are read from their files, every template renders."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "slack-webhook-url").write_text(f"{sink.url}/slack\n")
    (secrets / "pagerduty-routing-key").write_text("R0UT1NGKEYFROMFILE0000000000000\n")
    (secrets / "smtp-password").write_text("unused-without-auth\n")
    text = SHIPPED_CONFIG.read_text().replace("/etc/alertmanager/secrets", str(secrets))
    config = yaml.safe_load(text)
    config["global"]["smtp_smarthost"] = f"127.0.0.1:{smtp.port}"
    config["global"]["smtp_require_tls"] = False  # aiosmtpd here speaks plain SMTP
    with_timings(config, FAST)
    pagerduty = next(r for r in config["receivers"] if r["name"] == "pagerduty")
    pagerduty["pagerduty_configs"][0]["url"] = f"{sink.url}/pagerduty"

    with running_alertmanager(config, tmp_path / "am") as am:
        am.post_alerts(
            [
                alert("FlaskObserveTargetDown", "critical", "scraper-1:8000", ends_in=60),
                alert("FlaskObserveTargetDown", "critical", "scraper-2:8000", ends_in=60),
                alert("FlaskObserveHighErrorRate", "error", "scraper-1:8000", ends_in=60),
                alert("FlaskObserveLowDiskSpace", "warning", "scraper-1:8000", ends_in=60),
            ]
        )
        pages = wait_for(lambda: notifications(sink, "pagerduty"), timeout=15)
        slack = wait_for(lambda: notifications(sink, "slack"), timeout=15)
        mails = wait_for(lambda: list(smtp.messages), timeout=15)
        assert pages, am.output()
        assert slack, am.output()
        assert mails, am.output()

    page = pages[0]
    assert page["routing_key"] == "R0UT1NGKEYFROMFILE0000000000000"
    assert page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "critical"
    assert page["payload"]["summary"].startswith("FlaskObserveTargetDown on social-scraper:")
    details = page["payload"]["custom_details"]
    assert details["firing"] == "2 instance(s): scraper-1:8000 scraper-2:8000 "
    assert details["runbook_url"] == "https://runbooks.example.com/FlaskObserveTargetDown"

    attachment = slack[0]["attachments"][0]
    assert slack[0]["channel"] == "#alerts"
    assert attachment["title"] == "[FIRING:1] FlaskObserveHighErrorRate on social-scraper"
    assert attachment["title_link"] == "https://runbooks.example.com/FlaskObserveHighErrorRate"
    assert (
        "*scraper-1:8000* (error): FlaskObserveHighErrorRate on scraper-1:8000"
        in (attachment["text"])
    )

    assert mails[0]["To"] == "oncall@example.com"
    subject = " ".join(mails[0]["Subject"].split())
    assert subject == "[FIRING] FlaskObserveLowDiskSpace on social-scraper (1 instance(s))"
