"""The capture layer and the Sentry habits it supports: errors captured by hand, logged
errors, breadcrumbs, the user, sampling — real envelopes at a real HTTP endpoint used as the
DSN, real spans at a real OTLP receiver."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from flask import Flask, request

from flask_observe import Observe, capture_exception, capture_message
from flask_observe.errors import CapturedError, ErrorCapture
from flask_observe.errors.reporter import ErrorReporter
from flask_observe.state import current_state
from flask_observe.tracing.handle import TracingSetup

from .canaries import CANARIES, canary_request, leaked
from .peers import OtlpReceiver, SentryReceiver, wait_for

log = logging.getLogger("shop.orders")
#: Set with sentry_sdk.set_user (here, far from the views: the source lines around a failing
#: frame are sent, and a value written in them would be found in the envelope).
PERSON = {
    "id": "user-42",
    "username": "ada",
    "email": "ada@example.org",
    "ip_address": "198.51.100.20",
    "name": "Ada Lovelace",
}


@pytest.fixture
def sentry() -> Iterator[SentryReceiver]:
    with SentryReceiver() as running:
        yield running


def flush(app: Flask) -> None:
    reporter = current_state(app).get(ErrorReporter)
    assert reporter is not None
    assert reporter.client is not None
    reporter.client.flush(timeout=5)


def events_of(sentry: SentryReceiver, app: Flask, count: int) -> list[dict[str, Any]]:
    flush(app)
    return wait_for(lambda: len(sentry.events()) >= count and sentry.events(), 10) or []


def shop(make_app: Callable[..., Flask], dsn: str | None, **config: Any) -> Flask:
    settings: dict[str, Any] = {"log_stdout": False}
    if dsn is not None:
        settings["sentry_dsn"] = dsn
    settings.update(config)
    return make_app("shop", **settings)


def test_errors_captured_by_hand_reach_sentry_with_the_ids_and_the_scrubbing(
    make_app: Callable[..., Flask], sentry: SentryReceiver
) -> None:
    """Inside a view, sentry_sdk.capture_exception, sentry_sdk.capture_message and
    flask_observe.capture_exception each send one event (with tracing on): tagged with the
    request's correlation ID and the server span's trace and span IDs, named after the route,
    and scrubbed like unhandled errors (the secret in the message is gone, the rest is kept)."""
    with OtlpReceiver() as otlp:
        app = shop(make_app, sentry.dsn, tracing_endpoint=otlp.endpoint)

        @app.post("/orders/<int:order_id>/refund")
        def refund(order_id: int) -> str:
            try:
                raise ValueError(f"refund {order_id} refused: api_key={CANARIES['query']}")
            except ValueError as exc:
                sentry_sdk.capture_exception(exc)
            sentry_sdk.capture_message("refund queued for review", level="warning")
            try:
                raise LookupError("no such payment")
            except LookupError:
                capture_exception(order=str(order_id))
            return "accepted"

        response = app.test_client().post("/orders/9/refund", headers={"X-Request-ID": "by-hand"})
        assert response.status_code == 200
        events = events_of(sentry, app, 3)
        current_state(app).get(TracingSetup).provider.force_flush()  # type: ignore[union-attr]
        (server,) = wait_for(otlp.spans, 10)
    assert len(events) == 3
    for event in events:
        assert event["tags"]["correlation_id"] == "by-hand"
        assert event["tags"]["trace_id"] == server["trace_id"]
        assert event["tags"]["span_id"] == server["span_id"]
        assert event["contexts"]["trace"]["trace_id"] == server["trace_id"]
        assert event["transaction"] == "/orders/<int:order_id>/refund"
        assert event["request"] == {"method": "POST", "url": "http://localhost/orders/9/refund"}
    host_exc, message, ours = events
    assert host_exc["exception"]["values"][0]["value"] == "refund 9 refused: api_key=[Filtered]"
    assert message["message"] == "refund queued for review"
    assert message["level"] == "warning"
    assert ours["exception"]["values"][0]["type"] == "LookupError"
    assert ours["exception"]["values"][0]["mechanism"] == {"type": "manual", "handled": True}
    assert ours["tags"]["order"] == "9"
    assert CANARIES["query"].encode() not in sentry.raw()


def test_logged_errors_become_events_once_and_lines_below_are_breadcrumbs(
    make_app: Callable[..., Flask], sentry: SentryReceiver
) -> None:
    """logger.error (no exception) and logger.exception each become one event at the event
    level (default ERROR), with the logger, the message and the extra fields; an exception
    logged and then left unhandled is one event, not two; Flask's own "Exception on …" line
    adds none. The request's INFO and WARNING lines are its breadcrumbs (DEBUG is not), and
    another request's lines are not."""
    app = shop(make_app, sentry.dsn, log_level="DEBUG")

    @app.get("/noise")
    def noise() -> str:
        log.info("unrelated request line")
        return "ok"

    @app.get("/pay")
    def pay() -> str:
        log.debug("debug detail")
        log.info("charging card", extra={"amount": 12})
        log.warning("card issuer slow")
        log.error("charge failed", extra={"order_id": 7})
        try:
            raise TimeoutError("issuer timed out")
        except TimeoutError:
            log.exception("charge retry failed")
        try:
            raise KeyError("ledger")
        except KeyError:
            log.exception("ledger write failed")
            raise

    client = app.test_client()
    assert client.get("/noise").status_code == 200
    assert client.get("/pay").status_code == 500
    events = events_of(sentry, app, 3)
    assert len(events) == 3, [e.get("logentry") for e in events]
    plain, timeout, ledger = events
    assert plain["logger"] == "shop.orders"
    assert plain["level"] == "error"
    assert plain["logentry"]["message"] == "charge failed"
    assert plain["extra"] == {"order_id": 7}
    assert "exception" not in plain
    assert timeout["exception"]["values"][0]["type"] == "TimeoutError"
    assert timeout["exception"]["values"][0]["mechanism"]["type"] == "logging"
    assert ledger["exception"]["values"][0]["type"] == "KeyError"
    crumbs = [(c["level"], c["message"]) for c in plain["breadcrumbs"]["values"]]
    assert crumbs == [("info", "charging card"), ("warning", "card issuer slow")]
    assert plain["breadcrumbs"]["values"][0]["data"] == {"amount": 12}
    assert plain["breadcrumbs"]["values"][0]["category"] == "shop.orders"


@pytest.mark.parametrize(
    ("event_level", "breadcrumb_level", "events", "crumbs"),
    [("WARNING", "DEBUG", 2, ["debug", "info"]), ("off", "off", 0, None)],
)
def test_event_and_breadcrumb_levels_are_settable(
    make_app: Callable[..., Flask],
    sentry: SentryReceiver,
    event_level: str,
    breadcrumb_level: str,
    events: int,
    crumbs: list[str] | None,
) -> None:
    """OBSERVE_ERRORS_EVENT_LEVEL=WARNING makes the warning an event too, and
    OBSERVE_SENTRY_BREADCRUMB_LEVEL=DEBUG keeps the debug line; both ``off``: a logged error
    sends nothing (an exception captured by hand still does)."""
    app = shop(
        make_app,
        sentry.dsn,
        log_level="DEBUG",
        errors_event_level=event_level,
        sentry_breadcrumb_level=breadcrumb_level,
    )

    @app.get("/work")
    def work() -> str:
        log.debug("step one")
        log.info("step two")
        log.warning("slow step")
        log.error("step failed")
        capture_message("done by hand")
        return "ok"

    app.test_client().get("/work")
    found = events_of(sentry, app, events + 1)
    assert len(found) == events + 1
    if crumbs is None:
        assert "breadcrumbs" not in found[0] or not found[0]["breadcrumbs"].get("values")
    else:
        assert [c["level"] for c in found[0]["breadcrumbs"]["values"]] == crumbs


def test_breadcrumbs_are_bounded_to_the_newest(
    make_app: Callable[..., Flask], sentry: SentryReceiver
) -> None:
    """OBSERVE_SENTRY_MAX_BREADCRUMBS: a request that logs 50 lines keeps the last 5."""
    app = shop(make_app, sentry.dsn, sentry_max_breadcrumbs=5)

    @app.get("/loop")
    def loop() -> str:
        for i in range(50):
            log.info("line %d", i)
        log.error("after the loop")
        return "ok"

    app.test_client().get("/loop")
    (event,) = events_of(sentry, app, 1)
    messages = [c["message"] for c in event["breadcrumbs"]["values"]]
    assert messages == [f"line {i}" for i in range(45, 50)]


@pytest.mark.parametrize("send_pii", [False, True])
def test_the_user_keeps_id_and_username_and_personal_data_only_when_allowed(
    make_app: Callable[..., Flask], sentry: SentryReceiver, send_pii: bool
) -> None:
    """sentry_sdk.set_user in a view: the id and username are sent; e-mail and IP address
    only with OBSERVE_SENTRY_SEND_PII; any other field never. The next request (same
    thread) has no user: the scope is the request's own."""
    app = shop(make_app, sentry.dsn, sentry_send_pii=send_pii)

    @app.get("/me")
    def me() -> str:
        sentry_sdk.set_user(dict(PERSON))
        raise RuntimeError("profile failed")

    @app.get("/anon")
    def anon() -> str:
        raise RuntimeError("anonymous failure")

    client = app.test_client()
    client.get("/me")
    client.get("/anon")
    first, second = events_of(sentry, app, 2)
    expected = {"id": "user-42", "username": "ada"}
    if send_pii:
        expected.update(email="ada@example.org", ip_address="198.51.100.20")
    assert first["user"] == expected
    assert "id" not in second.get("user", {})
    assert b"Ada Lovelace" not in sentry.raw()
    assert (b"ada@example.org" in sentry.raw()) is send_pii


def test_sample_rate_environment_release_and_server_name_are_settable(
    make_app: Callable[..., Flask], sentry: SentryReceiver
) -> None:
    """OBSERVE_SENTRY_SAMPLE_RATE=0: 15 identical 500s send no envelope, while every one of
    them still reaches the listeners; the environment, release and server name are the
    configured ones."""
    app = shop(
        make_app,
        sentry.dsn,
        sentry_sample_rate=0.0,
        sentry_environment="canary",
        sentry_release="shop@9.9.9",
        sentry_server_name="web-7",
    )
    seen: list[CapturedError] = []
    with app.app_context():
        Observe.handle(ErrorCapture).add_listener(seen.append)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("always")

    client = app.test_client()
    for _ in range(15):
        assert client.get("/boom").status_code == 500
    flush(app)
    assert sentry.bodies == []
    assert len(seen) == 15
    reporter = current_state(app).get(ErrorReporter)
    assert reporter is not None
    options = reporter.client.options
    assert (options["environment"], options["release"], options["server_name"]) == (
        "canary",
        "shop@9.9.9",
        "web-7",
    )


def test_canaries_planted_on_every_new_path_never_reach_sentry(
    make_app: Callable[..., Flask], sentry: SentryReceiver
) -> None:
    """Besides the request's cookie, headers, query string, body, client address and a local
    variable: secrets in a breadcrumb's text, in a logged error's message and its extra fields,
    in the user's fields and in a tag. Three events arrive (logged error, handled error,
    unhandled error) and none of the planted secrets is in the envelopes; what is not secret
    arrived (the user id, the field names, the messages around the secrets)."""
    app = shop(make_app, sentry.dsn)

    @app.post("/orders/<int:order_id>/pay")
    def pay(order_id: int) -> str:
        body = request.get_json(silent=True) or {}
        secret_local = CANARIES["local"]
        sentry_sdk.set_user(
            {"id": "user-7", "email": f"{CANARIES['cookie']}@example.org", "name": secret_local}
        )
        sentry_sdk.set_tag("session_id", CANARIES["custom_header"])
        log.info("calling issuer with token=%s", CANARIES["authorization"])
        log.info("callback https://issuer.example/cb?code=%s", CANARIES["api_key_header"])
        log.error(
            "issuer refused Authorization: Bearer %s from %s",
            CANARIES["authorization"],
            CANARIES["client_ip"],
            extra={"password": CANARIES["json_body"], "note": f"secret={CANARIES['local']}"},
        )
        try:
            raise ValueError(f"card declined, cookie: session={CANARIES['cookie']}")
        except ValueError as exc:
            capture_exception(exc)
        raise RuntimeError(f"payment failed for order {order_id} ({len(body)})")

    response = canary_request(app.test_client(), "/orders/5/pay", rid="canary-new")
    assert response.status_code == 500
    events = events_of(sentry, app, 3)
    assert len(events) == 3
    assert leaked(sentry.raw()) == []
    logged = events[0]
    assert logged["logentry"]["message"] == "issuer refused Authorization: [Filtered] from [ip]"
    assert logged["extra"] == {"password": "[Filtered]", "note": "secret=[Filtered]"}
    assert logged["user"] == {"id": "user-7"}
    assert logged["tags"]["session_id"] == "[Filtered]"
    crumbs = [c["message"] for c in logged["breadcrumbs"]["values"]]
    assert crumbs == ["calling issuer with token=[Filtered]", "callback https://issuer.example/cb"]
    assert events[1]["exception"]["values"][0]["value"] == "card declined, cookie: [Filtered]"


def test_listeners_get_every_error_without_sentry(make_app: Callable[..., Flask]) -> None:
    """No DSN, no Sentry: a listener still gets each error once — unhandled, logged, captured
    by hand — as a CapturedError: qualified type, scrubbed message, frames (module, function,
    line) and no local variable, the route, method and correlation ID, and a fingerprint that
    is the same for the same error and different for another."""
    app = shop(make_app, None)
    seen: list[CapturedError] = []
    with app.app_context():
        capture = Observe.handle(ErrorCapture)
        assert current_state(app).get(ErrorReporter) is None
    capture.add_listener(seen.append)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        secret_local = "local-value-never-kept"
        if item_id == 1:
            raise PermissionError(f"token={secret_local}")
        if item_id == 2:
            log.error("stock count off by %d", item_id)
            return "logged"
        try:
            {}["missing"]
        except KeyError as exc:
            capture_exception(exc, item=str(item_id))
        return "captured"

    client = app.test_client()
    for item_id, rid in ((1, "a"), (1, "b"), (2, "c"), (3, "d")):
        client.get(f"/items/{item_id}", headers={"X-Request-ID": rid})
    assert [e.mechanism for e in seen] == ["flask", "flask", "logging", "manual"]
    first, again, logged, manual = seen
    assert first.exc_type == "PermissionError"
    assert first.message == "token=[Filtered]"
    assert first.handled is False
    assert first.level == "error"
    assert first.route == "/items/<int:item_id>"
    assert first.method == "GET"
    assert first.correlation_id == "a"
    assert again.correlation_id == "b"
    assert first.frames[-1][0] == __name__
    assert first.frames[-1][1].endswith("item")
    assert "local-value-never-kept" not in repr(seen)
    assert first.fingerprint == again.fingerprint
    assert len({first.fingerprint, logged.fingerprint, manual.fingerprint}) == 3
    assert logged.exc_type is None
    assert logged.logger == "shop.orders"
    assert logged.frames == ()
    assert logged.message == "stock count off by 2"
    assert manual.exc_type == "KeyError"
    assert manual.tags == (("item", "3"),)
    assert first.trace_id is None
    assert first.user_id is None


def test_a_failing_listener_is_logged_and_the_request_goes_on(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that raises: the request still answers its own 500, the other listeners
    still run, the failure is logged once per minute (not per error); after
    remove_listener it is not called any more."""
    app = shop(make_app, None)
    calls: list[str] = []

    def broken(error: CapturedError) -> None:
        calls.append("broken")
        raise RuntimeError("listener bug")

    with app.app_context():
        capture = Observe.handle(ErrorCapture)
    capture.add_listener(broken)
    capture.add_listener(lambda error: calls.append("next"))

    @app.get("/fail")
    def fail() -> str:
        raise ValueError("view failed")

    client = app.test_client()
    with caplog.at_level(logging.ERROR, "flask_observe"):
        statuses = [client.get("/fail").status_code for _ in range(3)]
    assert statuses == [500, 500, 500]
    assert calls == ["broken", "next"] * 3
    failures = [r for r in caplog.records if "error listener" in r.getMessage()]
    assert len(failures) == 1
    capture.remove_listener(broken)
    client.get("/fail")
    assert calls[-1] == "next"
    assert calls.count("broken") == 3


def test_capture_outside_any_app_is_a_no_op_and_outside_a_request_uses_the_running_app(
    make_app: Callable[..., Flask], sentry: SentryReceiver
) -> None:
    """No app with flask_observe: capture_message returns None. With one running, a capture
    from a thread outside any request (a CLI command, a job) reaches its Sentry, without
    request details."""
    assert capture_message("nobody listens") is None
    app = shop(make_app, sentry.dsn)
    captured = capture_message("nightly job failed", level="error", job="cleanup")
    assert captured is not None
    assert captured.route is None
    (event,) = events_of(sentry, app, 1)
    assert event["message"] == "nightly job failed"
    assert event["tags"]["job"] == "cleanup"
    assert "request" not in event


def test_the_capture_handler_keeps_the_access_logs_direct_path(
    make_app: Callable[..., Flask],
    sentry: SentryReceiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The capture layer's handler on the root logger (always there, at INFO with Sentry):
    the access log still writes its line straight to flask_observe's handlers, rendering it
    once (the capture handler shares the file handler's formatter and takes nothing); a 500's
    access line, at ERROR, is not an event of its own."""
    from flask_observe.errors.handler import CaptureHandler
    from flask_observe.logging.access import _direct_sinks

    app = shop(make_app, sentry.dsn, log_dir=str(tmp_path))

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("once")

    access = logging.getLogger("flask_observe.access")
    root = logging.getLogger()
    # Without pytest's own capturing handlers (with them, the access log takes the normal
    # path, as it does for any handler of the host's).
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if hasattr(h, "write_line")])
    sinks = _direct_sinks(access, logging.ERROR)
    assert sinks is not None
    assert any(isinstance(h, CaptureHandler) for h in sinks)
    assert len({id(h.formatter) for h in sinks}) == 1
    assert app.test_client().get("/boom").status_code == 500
    events = events_of(sentry, app, 1)
    assert [e["exception"]["values"][0]["value"] for e in events] == ["once"]
