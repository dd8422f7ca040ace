"""Alerting: channels and their formats, SSRF-safe URLs, 429 handling, dedup across instances
through the real Redis, never blocking requests, failures logged and never alerted on."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_observe import ConfigError, Observe
from flask_observe._clock import ManualClock
from flask_observe.alerting import (
    Alert,
    AlertRouter,
    CheckRule,
    DeliveryError,
    MemoryStore,
    RuleEngine,
    UrlPolicy,
    build_channels,
)
from flask_observe.alerting.hold import Hold
from flask_observe.state import current_state

from .alert_sinks import Listener, Sink, WatchedClock
from .conftest import need_service

LOOPBACK = {"alert_allow_http": True, "alert_allow_hosts": ["127.0.0.1"]}
REDIS_URL = "redis://127.0.0.1:6379/1"


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as server:
        yield server


def alert_app(
    make_app: Callable[..., Flask], channels: list[dict[str, Any]], **config: Any
) -> Flask:
    settings = {"log_stdout": False, **LOOPBACK, "alert_channels": channels, **config}
    return make_app(f"alerts-{uuid.uuid4().hex[:6]}", **settings)


def test_unsafe_webhook_urls_fail_start_up_without_connecting() -> None:
    """https only, no loopback/private/link-local targets unless allowlisted: each refused URL
    stops init_app with a ConfigError, and the listener behind them sees 0 connections. The
    message never shows the URL's secret path."""
    listener = Listener()
    try:
        port = listener.port
        refused = [
            ({}, f"http://127.0.0.1:{port}/services/SECRET"),  # http
            ({}, f"https://127.0.0.1:{port}/services/SECRET"),  # loopback
            ({"alert_allow_http": True}, f"http://localhost:{port}/services/SECRET"),
            ({}, "https://169.254.169.254/services/SECRET"),  # cloud metadata (link-local)
            ({}, "https://10.20.30.40/services/SECRET"),  # private
            ({}, "https://[::1]/services/SECRET"),
            ({}, "https://0.0.0.0/services/SECRET"),
            ({}, "ftp://example.com/services/SECRET"),
            ({"alert_allow_hosts": ["10.0.0.0/8"]}, f"https://127.0.0.1:{port}/services/SECRET"),
        ]
        for extra, url in refused:
            app = Flask("ssrf")
            app.config.update(
                OBSERVE_LOG_STDOUT=False,
                OBSERVE_ALERT_CHANNELS=[{"type": "webhook", "url": url}],
                **{f"OBSERVE_{k.upper()}": v for k, v in extra.items()},
            )
            with pytest.raises(ConfigError) as info:
                Observe(app)
            assert "SECRET" not in str(info.value), url
        assert listener.settled() == 0
    finally:
        listener.close()


def test_allowlisted_loopback_is_reached(make_app: Callable[..., Flask]) -> None:
    """The same loopback target, allowlisted (as tests and local receivers need), is used."""
    listener = Listener()
    try:
        app = alert_app(
            make_app, [{"type": "webhook", "url": f"http://127.0.0.1:{listener.port}/h"}]
        )
        result = app.test_cli_runner().invoke(args=["observe", "alerts", "test"])
        assert result.exit_code == 1  # the listener hangs up without answering
        assert listener.connections == 1
    finally:
        listener.close()


def test_redirects_are_not_followed() -> None:
    """A receiver answering 302 to another (allowlisted!) address: delivery fails, the
    redirect target sees no connection."""
    target = Listener()
    with Sink(lambda n: (302, {"Location": f"http://127.0.0.1:{target.port}/x"})) as redirector:
        try:
            policy = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))
            (channel,) = build_channels(
                [{"type": "webhook", "url": redirector.url + "/h"}], policy, 2.0
            )
            with pytest.raises(DeliveryError, match="redirect"):
                channel.send(Alert("X"))
            assert len(redirector.received) == 1
            assert target.settled() == 0
        finally:
            target.close()


def test_channel_formats_slack_discord_pagerduty_webhook(sink: Sink) -> None:
    """Each channel posts its service's format: Slack text+attachments, Discord embeds,
    PagerDuty Events v2 trigger/resolve with the fingerprint as dedup key, generic JSON."""
    policy = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))
    channels = build_channels(
        [
            {"type": "slack", "url": sink.url + "/slack"},
            {"type": "discord", "url": sink.url + "/discord"},
            {"type": "pagerduty", "url": sink.url + "/pd", "routing_key": "R0UTING"},
            {"type": "webhook", "url": sink.url + "/generic", "severities": ["critical"]},
        ],
        policy,
        2.0,
    )
    firing = Alert("DiskFull", "critical", "disk at 99%", labels={"host": "a"}, service="svc")
    resolved = Alert(
        "DiskFull", "critical", "ok again", labels={"host": "a"}, service="svc", status="resolved"
    )
    for channel in channels:
        channel.send(firing)
    channels[2].send(resolved)
    bodies = {path: body for _, path, body in sink.received[:4]}
    assert bodies["slack"]["text"].startswith("[CRITICAL] DiskFull (svc): disk at 99%")
    assert bodies["slack"]["attachments"][0]["fields"] == [
        {"title": "host", "value": "a", "short": True}
    ]
    assert bodies["discord"]["embeds"][0]["title"] == "[CRITICAL] DiskFull (svc)"
    assert bodies["discord"]["allowed_mentions"] == {"parse": []}
    assert bodies["pd"]["event_action"] == "trigger"
    assert bodies["pd"]["routing_key"] == "R0UTING"
    assert bodies["pd"]["dedup_key"] == firing.fingerprint
    assert bodies["pd"]["payload"]["severity"] == "critical"
    assert bodies["generic"]["name"] == "DiskFull"
    assert bodies["generic"]["status"] == "firing"
    resolve = sink.received[4][2]
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == firing.fingerprint


@pytest.mark.realtime
def test_routing_by_severity(sink: Sink) -> None:
    """Warnings go only to the channel that takes warnings."""
    policy = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))
    channels = build_channels(
        [
            {"type": "webhook", "url": sink.url + "/pager", "severities": ["critical"]},
            {"type": "webhook", "url": sink.url + "/chat", "severities": "warning,info"},
        ],
        policy,
        2.0,
    )
    router = AlertRouter(channels)
    router.notify(Alert("Slow", "warning"))
    router.notify(Alert("Down", "critical"))
    received = sink.wait_for(2)
    router.close()
    assert sorted((path, body["name"]) for _, path, body in received) == [
        ("chat", "Slow"),
        ("pager", "Down"),
    ]


def test_email_channel_over_smtp() -> None:
    """The email channel delivers a plain-text message to a real SMTP server on loopback."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    messages: list[Any] = []

    class Collect(Message):  # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            messages.append(message)

    from .peers import free_port

    port = free_port()
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        (channel,) = build_channels(
            [
                {
                    "type": "email",
                    "host": "127.0.0.1",
                    "port": port,
                    "starttls": False,
                    "from": "alerts@example.com",
                    "to": "oncall@example.com",
                }
            ],
            UrlPolicy(),
            5.0,
        )
        channel.send(
            Alert("QueueStuck", "error", "queue not draining", labels={"queue": "scrapes"})
        )
    finally:
        controller.stop()
    assert len(messages) == 1
    assert messages[0]["Subject"] == "[ERROR] QueueStuck: queue not draining"
    assert "queue: scrapes" in messages[0].get_payload()


@pytest.mark.realtime
def test_429_retry_after_is_honoured() -> None:
    """A receiver answering 429 with Retry-After: 2 gets nothing more while the router's clock
    has not moved 2 s on (the sender looked at it meanwhile), then the alert again."""
    clock = WatchedClock()
    with Sink(lambda n: (429, {"Retry-After": "2"}) if n == 1 else (200, {})) as sink:
        policy = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))
        router = AlertRouter(
            build_channels([{"type": "slack", "url": sink.url + "/s"}], policy, 2.0),
            clock=clock,
        )
        router.notify(Alert("Throttled"))
        assert len(sink.wait_for(1)) == 1
        clock.advance(1.9)
        clock.settle()
        assert len(sink.received) == 1
        clock.advance(0.1)
        received = sink.wait_for(2)
        router.close()
    assert len(received) == 2
    assert received[1][2]["text"] == received[0][2]["text"]


@pytest.mark.realtime  # request latency on the wall clock
def test_requests_do_not_wait_for_a_hung_receiver(make_app: Callable[..., Flask]) -> None:
    """The receiver accepts and never answers: requests raising alerts still finish far within
    the alert timeout, and a full queue drops alerts instead of blocking."""
    hung = Listener(hang=True)
    try:
        app = alert_app(
            make_app,
            [{"type": "webhook", "url": f"http://127.0.0.1:{hung.port}/h"}],
            alert_timeout_seconds=3.0,
            alert_queue_size=5,
        )
        router = current_state(app).get(AlertRouter)
        assert router is not None
        accepted: list[bool] = []

        @app.get("/raise/<int:n>")
        def raise_alert(n: int) -> str:
            accepted.append(router.notify(Alert(f"Alert{n}", "error")))
            return "ok"

        client = app.test_client()
        for n in range(30):
            started = time.monotonic()
            assert client.get(f"/raise/{n}").status_code == 200
            assert time.monotonic() - started < 1.0  # deadline: far below the 3 s timeout
        assert accepted.count(False) > 0  # queue bounded: extras dropped, nobody blocked
        deadline = time.monotonic() + 3
        while hung.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hung.connections >= 1  # the sender really is stuck on the receiver
    finally:
        hung.close()


@pytest.mark.realtime
def test_failed_delivery_is_logged_and_never_alerted(caplog: pytest.LogCaptureFixture) -> None:
    """A receiver answering 500: the alert is tried 3 times (again 1 s, then 5 s later on the
    router's clock), the failure is logged, and no alert about the failure is ever sent (no
    loop): nothing is left queued or scheduled."""
    clock = WatchedClock()
    with Sink(lambda n: (500, {})) as sink:
        policy = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))
        channels = build_channels([{"type": "webhook", "url": sink.url + "/h"}], policy, 2.0)
        router = AlertRouter(channels, clock=clock)
        with caplog.at_level(logging.WARNING, logger="flask_observe.alerting"):
            router.notify(Alert("Broken"))
            assert len(sink.wait_for(1)) == 1
            clock.advance(0.9)
            clock.settle()
            assert len(sink.received) == 1
            clock.advance(0.1)
            assert len(sink.wait_for(2)) == 2
            clock.advance(5)
            assert len(sink.wait_for(3)) == 3
            assert router.flush(5)
        router.close()
    assert [body["name"] for _, _, body in sink.received] == ["Broken"] * 3
    assert any(r.getMessage().startswith("alert not delivered") for r in caplog.records)


def test_memory_store_dedup_cooldown_and_resolve() -> None:
    """Firing is sent once per incident; repeats are deduplicated; resolve is sent only for a
    notified incident; a new incident of the same name within the cooldown stays quiet; once
    the dedup window has passed on the store's clock, a reminder goes out."""
    clock = ManualClock()
    store = MemoryStore(clock)
    assert store.decide("fp1", "A", True, dedup=60, cooldown=60) is True
    assert store.decide("fp1", "A", True, dedup=60, cooldown=60) is False
    assert store.decide("fp1", "A", False, dedup=60, cooldown=60) is True
    assert store.decide("fp1", "A", False, dedup=60, cooldown=60) is False
    assert store.decide("fp2", "A", True, dedup=60, cooldown=60) is False  # cooldown of A
    assert store.decide("fp2", "A", False, dedup=60, cooldown=60) is False  # never notified
    assert store.decide("fp3", "B", True, dedup=60, cooldown=0) is True
    clock.advance(59.9)
    assert store.decide("fp3", "B", True, dedup=60, cooldown=0) is False
    clock.advance(0.1)
    assert store.decide("fp3", "B", True, dedup=60, cooldown=0) is True  # reminder
    clock.advance(60)
    assert store.decide("fp4", "A", True, dedup=60, cooldown=60) is True  # A's cooldown over


def test_a_store_that_fails_falls_back_to_this_process_dedup(sink: Sink) -> None:
    """A decision store that raises (any custom store): the router decides in this process,
    so five firings of one incident send one notification, not five, and its resolve goes."""

    class Broken:
        def decide(self, *args: object) -> bool:
            raise ConnectionError("store down")

    router = AlertRouter(
        build_channels(
            [{"type": "webhook", "url": sink.url + "/h"}], UrlPolicy(True, ("127.0.0.1",)), 2.0
        ),
        Broken(),
    )
    for _ in range(5):
        router.notify(Alert("StoreDown"))
    router.notify(Alert("StoreDown", status="resolved"))
    assert router.flush(5)
    router.close()
    assert [body["status"] for _, _, body in sink.received] == ["firing", "resolved"]


def test_a_hold_keeps_the_most_important_alerts_and_summarises_them() -> None:
    """A throttled channel's hold of 3: a more important alert pushes out the latest of the
    least important; one no more important than the least held is dropped; drops are counted
    by severity. Released, a hold of one alert gives that alert, of more a summary naming the
    most severe first."""
    hold = Hold(3)
    first = Alert("First", "warning", "w1")
    assert hold.add(first) is None
    assert hold.add(Alert("Second", "warning", "w2")) is None
    assert hold.add(Alert("Info", "info", "i")) is None
    assert hold.add(Alert("Error", "error", "e")).name == "Info"  # type: ignore[union-attr]
    assert hold.add(Alert("Third", "warning", "w3")).name == "Third"  # type: ignore[union-attr]
    assert hold.add(Alert("Page", "critical", "c")).name == "Second"  # type: ignore[union-attr]
    assert (len(hold), hold.total, dict(hold.dropped)) == (3, 6, {"info": 1, "warning": 2})
    summary = hold.release("slack", "svc", 1_800_000_000.0)
    assert (summary.name, summary.severity, summary.labels) == (
        "FlaskObserveHeldAlerts",
        "critical",
        {"channel": "slack"},
    )
    assert summary.summary == (
        "6 alerts held while the channel was throttled: [CRITICAL] Page, [ERROR] Error,"
        " [WARNING] First and 3 more"
    )
    assert summary.description.splitlines() == [
        "1 critical, 1 error, 3 warning, 1 info",
        "",
        "[CRITICAL] Page: c",
        "[ERROR] Error: e",
        "[WARNING] First: w1",
        "3 not kept: at most 3 alerts are held per channel, the least important were dropped",
    ]
    single = Hold(3)
    single.add(first)
    assert single.release("slack", "svc", 0.0) is first


@pytest.mark.services
def test_three_instances_sharing_redis_send_one_alert_per_incident(
    make_app: Callable[..., Flask], sink: Sink
) -> None:
    """Three apps, each evaluating the same failing rule, share state in the real Redis: one
    firing notification, then one resolve, not three of each."""
    need_service("Redis", "127.0.0.1", 6379)
    prefix = f"test-alerts-{uuid.uuid4().hex}"
    problem: dict[str, str | None] = {"now": "the platform is down"}
    engines: list[RuleEngine] = []
    for _ in range(3):
        app = alert_app(
            make_app,
            [{"type": "slack", "url": sink.url + "/slack"}],
            alert_redis_url=REDIS_URL,
            alert_redis_prefix=prefix,
            alert_rules_consecutive=2,
            alert_resolve_after_seconds=0,
            service_name="scraper",
        )
        engine = current_state(app).get(RuleEngine)
        assert engine is not None
        engine.rules.clear()
        engine.add(CheckRule("PlatformDown", lambda: problem["now"], severity="critical"))
        engines.append(engine)
    for _ in range(4):  # fires at the 2nd evaluation, then keeps failing
        for engine in engines:
            engine.evaluate()
    # Each instance has its own sender thread: wait for the firing to be delivered before the
    # rule recovers (evaluations are seconds apart in real life), or another instance's
    # resolve may reach the receiver first.
    for engine in engines:
        assert engine.router.flush(5)
    problem["now"] = None
    for _ in range(2):
        for engine in engines:
            engine.evaluate()
    for engine in engines:
        assert engine.router.flush(5)  # each delivery is recorded before it returns
    texts = [body["text"] for _, _, body in sink.received]
    assert len(texts) == 2, texts
    assert texts[0].startswith("[CRITICAL] PlatformDown (scraper): the platform is down")
    assert texts[1].startswith("[RESOLVED] PlatformDown (scraper)")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(*client.keys(f"{prefix}:*") or ["none"])
    client.close()


def test_cli_sends_a_test_alert(make_app: Callable[..., Flask], sink: Sink) -> None:
    """``flask observe alerts test`` posts a test alert to every channel and says so."""
    app = alert_app(make_app, [{"type": "slack", "url": sink.url + "/s", "name": "team-slack"}])
    result = app.test_cli_runner().invoke(args=["observe", "alerts", "test"])
    assert result.exit_code == 0, result.output
    assert "team-slack: ok" in result.output
    assert "FlaskObserveTestAlert" in sink.received[0][2]["text"]


def test_channel_config_errors_name_the_entry(make_app: Callable[..., Flask]) -> None:
    """A channel without its required fields fails start-up naming the entry."""
    with pytest.raises(ConfigError, match=r"channel 0 \(pagerduty\): needs a 'routing_key'"):
        alert_app(make_app, [{"type": "pagerduty"}])
    with pytest.raises(ConfigError, match=r"channel 0 \(sms\): type must be"):
        alert_app(make_app, [{"type": "sms"}])


def test_config_command_hides_channels_and_redis_url(
    make_app: Callable[..., Flask], sink: Sink
) -> None:
    """Webhook URLs and the Redis URL (with its password) stay hidden in flask observe config."""
    app = alert_app(
        make_app,
        [{"type": "slack", "url": sink.url + "/services/T0/B0/SECRETPATH"}],
        alert_redis_url="redis://:hunter2@127.0.0.1:6379/3",
    )
    result = app.test_cli_runner().invoke(args=["observe", "config"])
    assert result.exit_code == 0, result.output
    assert "SECRETPATH" not in result.output
    assert "hunter2" not in result.output
    assert '"OBSERVE_ALERT_CHANNELS": "<set>"' in result.output


def test_unresolvable_host_at_start_up_is_a_warning_then_a_failed_send(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """DNS failing at start-up does not stop the app; sending then fails and is logged."""
    with caplog.at_level(logging.WARNING, logger="flask_observe.alerting"):
        app = make_app(
            "nodns",
            log_stdout=False,
            alert_channels=[{"type": "slack", "url": "https://hooks.example.invalid/x"}],
        )
    assert "does not resolve now" in caplog.text
    result = app.test_cli_runner().invoke(args=["observe", "alerts", "test"])
    assert result.exit_code == 1
    assert "does not resolve" in result.output


@pytest.mark.realtime  # the channel's deadline is a socket's, on the wall clock
def test_a_receiver_dripping_its_answer_is_cut_at_the_channel_timeout() -> None:
    """A receiver that answers one byte every 0.2 s (each read within the socket timeout, the
    whole far beyond it): the delivery fails at the channel's timeout (± 0.5 s), so one slow
    receiver cannot hold the sender thread for minutes."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + b"X-Pad: " + b"a" * 200 + b"\r\n\r\nok"
        )
        for byte in answer:
            if stop.wait(0.2):
                break
            try:
                conn.send(bytes([byte]))
            except OSError:
                break
        conn.close()

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        (channel,) = build_channels(
            [{"type": "webhook", "url": f"http://127.0.0.1:{port}/h"}],
            UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",)),
            1.0,
        )
        started = time.monotonic()
        with pytest.raises(DeliveryError):
            channel.send(Alert("Dripped"))
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(5)
        server.close()
    assert 0.9 <= elapsed <= 1.5, elapsed


def test_the_alerting_counters_count_fired_sent_failed_and_dropped_by_channel(
    make_app: Callable[..., Flask],
) -> None:
    """An app's router counts into its metrics: a firing alert (by severity) delivered to a
    real receiver is fired + sent on that channel; a receiver answering 500 every time is
    failed after the attempts; one throttled for an hour (429) with a hold of 1 drops the
    less important of what it holds."""
    from flask_observe.alerting.setup import _alert_counters
    from flask_observe.metrics import Metrics

    with Sink() as ok, Sink(lambda n: (500, {})) as broken:
        app = alert_app(make_app, [{"type": "webhook", "url": ok.url + "/ok"}])
        router = Observe.handle(AlertRouter, app)
        router.notify(Alert("Down", "critical"))
        router.notify(Alert("Down", "critical", status="resolved"))
        ok.wait_for(2)
        assert router.flush(5)
        registry = Observe.handle(Metrics, app).registry
        name = router.channels[0].name
        assert (
            registry.get_sample_value("flask_observe_alerts_fired_total", {"severity": "critical"})
            == 1
        )
        assert registry.get_sample_value("flask_observe_alerts_sent_total", {"channel": name}) == 2

        metrics = Metrics(process_metrics=False)
        policy = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))
        failing = AlertRouter(
            build_channels([{"type": "webhook", "url": broken.url + "/x"}], policy, 2.0),
            backoff=(0.01, 0.01),
            on_event=_alert_counters(metrics),
        )
        failing.notify(Alert("Broken", "error"))
        assert len(broken.wait_for(3)) == 3
        assert failing.flush(5)
        failing.close()
        channel = failing.channels[0].name
        value = metrics.registry.get_sample_value
        assert value("flask_observe_alerts_failed_total", {"channel": channel}) == 1
        assert value("flask_observe_alerts_sent_total", {"channel": channel}) is None

    clock = ManualClock()
    with Sink(lambda n: (429, {"Retry-After": "3600"})) as throttled:
        metrics = Metrics(process_metrics=False)
        held = AlertRouter(
            build_channels([{"type": "webhook", "url": throttled.url + "/t"}], policy, 2.0),
            hold_size=1,
            clock=clock,
            dedup=0,
            cooldown=0,
            on_event=_alert_counters(metrics),
        )
        for i, severity in enumerate(["warning", "critical", "info", "warning"]):
            held.notify(Alert(f"A{i}", severity))
        assert held.flush(5)
        channel = held.channels[0].name
        assert len(throttled.received) == 1
        value = metrics.registry.get_sample_value
        # The first is refused (429) and held; of the four held in turn, three are dropped.
        assert held.held() == {channel: 1}
        assert value("flask_observe_alerts_dropped_total", {"channel": channel}) == 3
        assert value("flask_observe_alerts_fired_total", {"severity": "warning"}) == 2
        held.close()


def test_the_alerting_counters_stay_bounded_with_random_alerts(sink: Sink) -> None:
    """300 alerts with random names, severities and statuses through a queue of 20: the
    counters' labels are only the four severities, the configured channel and ``<queue>``."""
    import random
    import string

    from flask_observe.alerting import SEVERITIES
    from flask_observe.alerting.setup import _alert_counters
    from flask_observe.metrics import Metrics

    metrics = Metrics(process_metrics=False)
    policy = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))
    router = AlertRouter(
        build_channels([{"type": "webhook", "url": sink.url + "/r"}], policy, 2.0),
        queue_size=20,
        dedup=0,
        cooldown=0,
        on_event=_alert_counters(metrics),
    )
    rng = random.Random(5)
    for _ in range(300):
        name = "".join(rng.choices(string.printable, k=rng.randint(1, 80)))
        router.notify(
            Alert(name, rng.choice(SEVERITIES), status=rng.choice(["firing", "resolved"]))
        )
    assert router.flush(30)
    router.close()
    labels: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        if family.name.startswith("flask_observe_alerts_"):
            for s in family.samples:
                labels.setdefault(family.name, set()).update(s.labels.values())
    assert labels["flask_observe_alerts_fired"] <= set(SEVERITIES)
    channel = router.channels[0].name
    for event in ("sent", "dropped"):
        assert labels.get(f"flask_observe_alerts_{event}", set()) <= {channel, "<queue>"}
    assert labels["flask_observe_alerts_sent"] == {channel}
