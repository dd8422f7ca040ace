"""The ``alertmanager`` channel: what it posts (Alertmanager's API v2: an array of alerts with
labels, annotations, ``startsAt``/``endsAt``, ``generatorURL``), when (at once for a new
incident and for its resolve, again every ``resend_seconds`` while it fires), and how it
fails (retries, ``Retry-After``, the URL policy); then a real Alertmanager taking what it
posts."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_observe.alerting import Alert, AlertRouter, UrlPolicy, build_channels
from flask_observe.alerting.alertmanager import AlertmanagerChannel
from flask_observe.alerting.prometheus import DEFAULT_RUNBOOK_BASE
from flask_observe.config import ConfigError

from .alert_sinks import Sink, WatchedClock
from .alertmanager_peer import running_alertmanager, webhook_variant
from .peers import wait_for

POLICY = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))


def channel(url: str, **spec: Any) -> AlertmanagerChannel:
    (built,) = build_channels([{"type": "alertmanager", "url": url, **spec}], POLICY, 2.0)
    assert isinstance(built, AlertmanagerChannel)
    return built


def parse(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as receiver:
        yield receiver


def am_open(router: AlertRouter) -> int:
    (am,) = router.channels
    assert isinstance(am, AlertmanagerChannel)
    return len(am.incidents)


def posts(sink: Sink) -> list[list[dict[str, Any]]]:
    """Each POST's body (an array), in order; every one went to the API v2 path."""
    assert all(path == "api/v2/alerts" for _, path, _ in sink.received), sink.received
    return [body for _, _, body in sink.received]


def test_a_firing_alert_is_one_array_element_with_labels_annotations_and_times(
    sink: Sink,
) -> None:
    """An in-process rule's alert becomes the Prometheus rule's name (so both paths group
    together), with severity, service, instance (the host), pid, static and own labels (names
    made valid), summary/description/runbook_url (the rules renderer's base), startsAt at the
    incident's start, endsAt four resend intervals ahead, generatorURL when configured."""
    am = channel(
        sink.url,
        labels={"cluster": "eu-1"},
        resend_seconds=30,
        generator_url="https://scraper.example.com/health",
    )
    alert = Alert(
        "CircuitBreakerOpen",
        "error",
        "circuit breaker(s) open: platform-api",
        "5 failures in a row",
        labels={"breaker": "platform-api", "bad-name": "x"},
        service="scraper",
        timestamp=1_800_000_000.0,
    )
    body = am.payload_of(alert, alert.timestamp, 1_800_000_010.0)
    assert body == {
        "labels": {
            "cluster": "eu-1",
            "breaker": "platform-api",
            "bad_name": "x",
            "alertname": "FlaskObserveCircuitBreakerOpen",
            "severity": "error",
            "service": "scraper",
            "instance": socket.gethostname(),
            "pid": str(os.getpid()),
        },
        "annotations": {
            "summary": "circuit breaker(s) open: platform-api",
            "description": "5 failures in a row",
            "runbook_url": f"{DEFAULT_RUNBOOK_BASE}/FlaskObserveCircuitBreakerOpen.md",
        },
        "startsAt": "2027-01-15T08:00:00.000Z",
        "endsAt": "2027-01-15T08:02:10.000Z",
        "generatorURL": "https://scraper.example.com/health",
    }
    am.send(alert)
    (posted,) = posts(sink)
    assert isinstance(posted, list)
    assert posted[0]["labels"]["alertname"] == "FlaskObserveCircuitBreakerOpen"


def test_runbooks_follow_the_configured_base_and_the_hosts_own_alerts_their_mapping() -> None:
    am = channel(
        "http://127.0.0.1:9",
        runbook_base="https://wiki.example.com/runbooks/",
        runbooks={"NoSuccessfulScrape": "https://wiki.example.com/scraper-stale"},
        instance="scraper-7d9f-abc",
    )
    own = am.payload_of(Alert("NoSuccessfulScrape", "critical", "stale"), 0.0, 0.0)
    assert own["annotations"]["runbook_url"] == "https://wiki.example.com/scraper-stale"
    assert own["labels"]["instance"] == "scraper-7d9f-abc"
    assert "generatorURL" not in own
    shipped = am.payload_of(Alert("HighErrorRate", "error", "5xx"), 0.0, 0.0)
    assert shipped["labels"]["alertname"] == "FlaskObserveHighErrorRate"
    assert (
        shipped["annotations"]["runbook_url"]
        == "https://wiki.example.com/runbooks/FlaskObserveHighErrorRate.md"
    )
    other = am.payload_of(Alert("SomethingElse", "info", "x"), 0.0, 0.0)
    assert "runbook_url" not in other["annotations"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"url": "http://10.0.0.5:9093"}, "10.0.0.5"),
        ({}, "needs a 'url'"),
        ({"url": "http://127.0.0.1:9093", "severity": "critical"}, "unknown field(s) 'severity'"),
        ({"url": "http://127.0.0.1:9093", "labels": "x"}, "'labels' must be an object"),
        ({"url": "http://127.0.0.1:9093", "resend_seconds": 0}, "resend_seconds"),
    ],
)
def test_bad_channel_settings_are_refused_at_start_up(spec: dict[str, Any], message: str) -> None:
    """The same URL policy as every channel (a private address needs the allowlist), and the
    same refusal of unknown or malformed fields, naming the channel, never its URL's path."""
    from flask import Flask

    from flask_observe import Observe

    app = Flask("am")
    app.config.update(
        OBSERVE_ALERT_CHANNELS=[{"type": "alertmanager", **spec}],
        OBSERVE_ALERT_ALLOW_HTTP=True,
        OBSERVE_ALERT_ALLOW_HOSTS=["127.0.0.1"],
        OBSERVE_LOGGING_ENABLED=False,
    )
    with pytest.raises(ConfigError) as raised:
        Observe(app)
    assert message in str(raised.value)
    assert "channel 0 (alertmanager)" in str(raised.value)


def test_new_incidents_and_resolves_go_at_once_repeats_only_every_resend_interval(
    sink: Sink,
) -> None:
    """On the router's clock: the first firing is posted at once; the rule's re-evaluations
    (every 15 s) post nothing until ``resend_seconds`` (60) has passed, then the alert again
    with the same startsAt and a later endsAt; the resolve is posted at once with endsAt at
    the moment it resolved; afterwards nothing. The router's dedup/cooldown store is not
    asked (Alertmanager dedups)."""
    clock = WatchedClock()
    router = AlertRouter([channel(sink.url)], clock=clock, service="scraper", cooldown=3600)
    start = clock.time()
    try:
        assert router.notify(Alert("HighErrorRate", "error", "9% 5xx", timestamp=clock.time()))
        assert wait_for(lambda: len(sink.received) == 1, 10)
        assert router.flush(5)  # posted and marked sent before the clock moves
        for _ in range(3):  # 45 s of evaluations: repeats, not due yet
            clock.advance(15)
            router.notify(Alert("HighErrorRate", "error", "12% 5xx", timestamp=clock.time()))
            assert router.flush(5)
        clock.settle()
        assert len(sink.received) == 1
        clock.advance(15)  # 60 s after the first post
        assert wait_for(lambda: len(sink.received) == 2, 10)
        clock.advance(5)
        router.notify(
            Alert(
                "HighErrorRate",
                "error",
                "back to normal",
                status="resolved",
                timestamp=clock.time(),
            )
        )
        assert wait_for(lambda: len(sink.received) == 3, 10)
        assert router.flush(5)
        # Nothing open any more: the sender waits for the next alert, not on the clock.
        assert am_open(router) == 0
        clock.advance(600)
        assert router.flush(5)
        assert len(sink.received) == 3
    finally:
        router.close()
    first, again, resolved = posts(sink)
    assert [len(p) for p in (first, again, resolved)] == [1, 1, 1]
    assert parse(first[0]["startsAt"]) == pytest.approx(start)
    assert parse(first[0]["endsAt"]) == pytest.approx(start + 240)
    assert again[0]["startsAt"] == first[0]["startsAt"]
    assert again[0]["annotations"]["summary"] == "12% 5xx"  # the latest evaluation's words
    assert parse(again[0]["endsAt"]) == pytest.approx(start + 60 + 240)
    assert resolved[0]["startsAt"] == first[0]["startsAt"]
    assert parse(resolved[0]["endsAt"]) == pytest.approx(start + 65)
    assert resolved[0]["labels"]["service"] == "scraper"
    assert router.sent == 3


def test_several_open_incidents_are_resent_together_in_one_request(sink: Sink) -> None:
    clock = WatchedClock()
    router = AlertRouter([channel(sink.url)], clock=clock, service="scraper")
    try:
        for name in ("HighErrorRate", "HighLatency"):
            router.notify(Alert(name, "warning", name, timestamp=clock.time()))
        assert wait_for(lambda: len(sink.received) >= 1, 10)
        assert router.flush(5)
        sent_first = sum(len(body) for body in posts(sink))
        assert sent_first == 2
        before = len(sink.received)
        clock.advance(60)
        assert wait_for(lambda: len(sink.received) == before + 1, 10)
    finally:
        router.close()
    names = sorted(a["labels"]["alertname"] for a in posts(sink)[-1])
    assert names == ["FlaskObserveHighErrorRate", "FlaskObserveHighLatency"]


def test_a_failing_alertmanager_is_retried_with_backoff_and_a_429_waits_its_retry_after() -> None:
    """500: tried again after 1 s, then 5 s (the router's backoff), then every resend
    interval, never in a loop; a 429 with ``Retry-After: 30`` is left alone 30 s, then the
    open incident is posted."""
    answers = iter([(500, {}), (500, {}), (500, {}), (429, {"Retry-After": "30"})])

    def answer(n: int) -> tuple[int, dict[str, str]]:
        return next(answers, (200, {}))

    clock = WatchedClock()
    with Sink(answer) as sink:
        am = channel(sink.url)
        router = AlertRouter([am], clock=clock)

        def answered(count: int) -> None:
            # The router has read the answer (and set when to try again) before time moves.
            assert wait_for(lambda: len(sink.received) == count and am.failures == count, 10)

        try:
            router.notify(Alert("HighErrorRate", "error", "x", timestamp=clock.time()))
            # (seconds on the router's clock, posts received by then): 1 s, 5 s, 60 s, 30 s
            for wait, count in ((1.0, 1), (5.0, 2), (60.0, 3), (30.0, 4)):
                answered(count)
                clock.advance(wait - 0.5)
                clock.settle()
                assert len(sink.received) == count
                clock.advance(0.5)
            assert wait_for(lambda: len(sink.received) == 5, 10)
            assert router.flush(5)
        finally:
            router.close()
    assert [len(body) for body in posts(sink)] == [1, 1, 1, 1, 1]
    assert am.failures == 0


def test_a_channel_beside_it_keeps_its_dedup_and_cooldown(sink: Sink) -> None:
    """A webhook next to the Alertmanager channel still gets one notification per incident
    (the router's store), while Alertmanager gets its resends."""
    clock = WatchedClock()
    channels = [
        channel(sink.url),
        *build_channels([{"type": "webhook", "url": sink.url + "/hook"}], POLICY, 2.0),
    ]
    router = AlertRouter(channels, clock=clock)
    try:
        for _ in range(6):  # 90 s firing
            router.notify(Alert("HighErrorRate", "error", "x", timestamp=clock.time()))
            assert router.flush(5)
            clock.advance(15)
        clock.settle()
        assert router.flush(5)
    finally:
        router.close()
    by_path = [path for _, path, _ in sink.received]
    assert by_path.count("hook") == 1
    assert by_path.count("api/v2/alerts") == 2  # at 0 s and 60 s


@pytest.mark.realtime
@pytest.mark.services
def test_a_real_alertmanager_holds_the_alert_then_sees_it_resolved(
    tmp_path: Path, sink: Sink
) -> None:
    """Debian's Alertmanager takes the channel's posts (HTTP 200, not the 400 a single
    object gets): the alert is active with our labels and annotations, then resolved."""
    with running_alertmanager(webhook_variant(sink.url), tmp_path / "am") as manager:
        am = channel(manager.url, instance="pod-a")
        router = AlertRouter([am], service="scraper")
        try:
            router.notify(Alert("CircuitBreakerOpen", "error", "platform-api open"))
            assert router.flush(10)

            def active() -> list[dict[str, Any]]:
                return [a for a in manager.alerts() if a["status"]["state"] == "active"]

            (held,) = wait_for(active, 10) or [None]
            assert held is not None, manager.output()
            assert held["labels"]["alertname"] == "FlaskObserveCircuitBreakerOpen"
            assert held["labels"]["instance"] == "pod-a"
            assert held["labels"]["service"] == "scraper"
            assert held["annotations"]["runbook_url"].endswith("/FlaskObserveCircuitBreakerOpen.md")
            router.notify(Alert("CircuitBreakerOpen", "error", "closed", status="resolved"))
            assert router.flush(10)
            assert wait_for(lambda: not active(), 10), manager.alerts()
        finally:
            router.close()
