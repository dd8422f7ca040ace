"""Correlation IDs at the WSGI level: accepted, generated, echoed, bound, never unsafe."""

from __future__ import annotations

import logging
import os
import re
import string
import threading
from collections.abc import Callable, Iterator

import pytest
import requests
from flask import Flask, Response, abort, stream_with_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from flask_observe import get_correlation_id
from flask_observe.context import _IdPool, id_validator, new_correlation_id
from flask_observe.correlation import CorrelationMiddleware

from .conftest import LiveServer

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
SAFE_ID = re.compile(r"[A-Za-z0-9._:@+=-]{1,128}\Z")


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    app = make_app(log_stdout=False)

    @app.get("/id")
    def show_id() -> dict[str, str | None]:
        return {"id": get_correlation_id()}

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("boom")

    @app.get("/teapot")
    def teapot() -> str:
        abort(418)

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for _ in range(3):
                yield (get_correlation_id() or "none") + "\n"

        return Response(stream_with_context(chunks()))

    return app


def test_valid_incoming_id_is_kept_and_echoed(app: Flask) -> None:
    """A well-formed X-Request-ID is bound for the request and echoed back."""
    response = app.test_client().get("/id", headers={"X-Request-ID": "req-42.a:b@c+d=e_f"})
    assert response.headers["X-Request-ID"] == "req-42.a:b@c+d=e_f"
    assert response.json == {"id": "req-42.a:b@c+d=e_f"}


def test_missing_id_is_generated_as_uuid4(app: Flask) -> None:
    """Without an incoming ID a fresh UUID4 is generated, different per request."""
    client = app.test_client()
    first = client.get("/id")
    second = client.get("/id")
    assert UUID4.match(first.headers["X-Request-ID"])
    assert first.json == {"id": first.headers["X-Request-ID"]}
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def test_generated_ids_are_unique_across_threads_and_pool_refills() -> None:
    """IDs come from a pool of os.urandom bytes refilled every 64 IDs: 8 threads drawing
    across many refills get only well-formed UUID4s, none handed out twice."""
    per_thread = 5 * _IdPool.batch + 7
    results: list[list[str]] = [[] for _ in range(8)]

    def draw(out: list[str]) -> None:
        out.extend(new_correlation_id() for _ in range(per_thread))

    threads = [threading.Thread(target=draw, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for out in results for i in out]
    assert len(ids) == 8 * per_thread
    assert all(UUID4.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_reuse_the_parents_pool() -> None:
    """A fork copies the pool's unused bytes: the child must draw its own, or a gunicorn
    worker and its siblings would generate the same IDs."""
    new_correlation_id()  # the pool now holds unused bytes, which the fork copies
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next IDs and leave without running pytest's exit
        try:
            os.write(write_end, ",".join(new_correlation_id() for _ in range(8)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_ids = set(pipe.read().decode().split(","))
    os.waitpid(pid, 0)
    parent_ids = {new_correlation_id() for _ in range(8)}
    assert len(child_ids) == 8
    assert not child_ids & parent_ids


def test_x_correlation_id_is_accepted_as_fallback(app: Flask) -> None:
    """X-Correlation-ID is used when X-Request-ID is absent; the echo uses X-Request-ID."""
    response = app.test_client().get("/id", headers={"X-Correlation-ID": "corr-7"})
    assert response.headers["X-Request-ID"] == "corr-7"


@pytest.mark.parametrize(
    "bad",
    [
        "a\r\nSet-Cookie: x=1",
        "\x1b[31mred\x1b[0m",
        "x" * 100_000,
        "x" * 129,
        "has space",
        "ünïcode",
        "",
        "a\x00b",
        "<script>",
    ],
)
def test_unsafe_incoming_id_is_replaced(app: Flask, bad: str) -> None:
    """CR/LF, ANSI, NUL, spaces, non-ASCII and over-long values never come back out."""
    response = app.test_client().get("/id", environ_base={"HTTP_X_REQUEST_ID": bad})
    echoed = response.headers["X-Request-ID"]
    assert echoed != bad
    assert UUID4.match(echoed)
    assert response.json == {"id": echoed}


def test_trust_incoming_false_always_generates(make_app: Callable[..., Flask]) -> None:
    """With OBSERVE_REQUEST_ID_TRUST_INCOMING off, even valid incoming IDs are replaced."""
    app = make_app(log_stdout=False, request_id_trust_incoming=False)
    response = app.test_client().get("/", headers={"X-Request-ID": "client-chosen"})
    assert UUID4.match(response.headers["X-Request-ID"])


@pytest.mark.parametrize(("path", "status"), [("/nope", 404), ("/teapot", 418)])
def test_error_responses_carry_the_id(app: Flask, path: str, status: int) -> None:
    """404s and aborts echo the ID."""
    response = app.test_client().get(path, headers={"X-Request-ID": "err-1"})
    assert response.status_code == status
    assert response.headers["X-Request-ID"] == "err-1"


def test_method_not_allowed_carries_the_id(app: Flask) -> None:
    """A 405 echoes the ID."""
    response = app.test_client().post("/id", headers={"X-Request-ID": "err-405"})
    assert response.status_code == 405
    assert response.headers["X-Request-ID"] == "err-405"


def test_500_from_a_view_carries_the_id(app: Flask) -> None:
    """An exception in a view (handled by Flask) gives a 500 with the ID."""
    response = app.test_client().get("/fail", headers={"X-Request-ID": "err-500"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "err-500"


def test_exception_in_other_middleware_becomes_500_with_id(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """Middleware wrapped inside ours that raises: 500 with the ID, error logged with it."""

    def broken_middleware(environ: dict[str, object], start_response: object) -> list[bytes]:
        raise ValueError("middleware exploded")

    assert isinstance(app.wsgi_app, CorrelationMiddleware)
    app.wsgi_app.wrapped = broken_middleware
    with caplog.at_level(logging.ERROR, logger="flask_observe"):
        response = Client(app).get("/id", headers={"X-Request-ID": "mw-err"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "mw-err"
    record = next(r for r in caplog.records if r.name == "flask_observe")
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError


def test_exception_propagates_in_testing_mode(app: Flask) -> None:
    """With TESTING (or PROPAGATE_EXCEPTIONS) the host's tests still see the exception."""
    app.testing = True

    def broken_middleware(environ: dict[str, object], start_response: object) -> list[bytes]:
        raise ValueError("visible to the test")

    assert isinstance(app.wsgi_app, CorrelationMiddleware)
    app.wsgi_app.wrapped = broken_middleware
    with pytest.raises(ValueError, match="visible to the test"):
        Client(app).get("/id")


def test_a_view_exception_flask_re_raises_keeps_its_route(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """In testing mode the view's exception leaves the app before any response starts; the
    access line (and the metrics) still name the matched route, not ``null``."""
    app = make_app("reraised", log_stdout=False)
    app.testing = True

    @app.get("/boom/<int:n>")
    def boom(n: int) -> str:
        raise ValueError("visible to the test")

    with (
        caplog.at_level(logging.INFO, logger="flask_observe.access"),
        pytest.raises(ValueError, match="visible to the test"),
    ):
        app.test_client().get("/boom/1")
    (line,) = [r for r in caplog.records if r.name == "flask_observe.access"]
    assert (line.route, line.status) == ("/boom/<int:n>", 500)


def test_id_is_unbound_after_the_request(app: Flask) -> None:
    """get_correlation_id() is None again once the request is over, even if unread."""
    client = app.test_client()
    response = client.get("/id", headers={"X-Request-ID": "leak-check"})
    assert get_correlation_id() is None
    assert response.json == {"id": "leak-check"}
    assert get_correlation_id() is None


def test_streamed_response_sees_the_id_in_every_chunk(app: Flask) -> None:
    """A streaming view's generator runs with the request's ID bound."""
    response = app.test_client().get("/stream", headers={"X-Request-ID": "stream-1"})
    assert response.get_data(as_text=True) == "stream-1\n" * 3
    assert get_correlation_id() is None


def test_existing_header_set_by_view_is_replaced_not_duplicated(app: Flask) -> None:
    """If the app sets the header itself, exactly one (ours) goes out."""

    @app.get("/own")
    def own() -> Response:
        return Response("x", headers={"X-Request-ID": "view-set"})

    response = app.test_client().get("/own", headers={"X-Request-ID": "from-client"})
    assert response.headers.getlist("X-Request-ID") == ["from-client"]


def test_over_a_real_server_every_response_has_the_id(app: Flask) -> None:
    """Through a real HTTP server: 200, 404, 405 and 500 all carry X-Request-ID."""
    with LiveServer(app) as server:
        for method, path, status in [
            ("GET", "/id", 200),
            ("GET", "/missing", 404),
            ("POST", "/id", 405),
            ("GET", "/fail", 500),
        ]:
            response = requests.request(method, server.url + path, timeout=5)
            assert response.status_code == status
            assert UUID4.match(response.headers["X-Request-ID"])


def test_validator_rule() -> None:
    """The documented rule: 1..max_length characters from A-Za-z0-9 . _ : @ + = -."""
    is_valid = id_validator(16)
    assert is_valid("abc-DEF_123.x:y")
    assert not is_valid("x" * 17)
    assert not is_valid("")
    assert not is_valid("abc\n")
    assert not is_valid("a/b")


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.one_of(
        st.text(max_size=300),
        st.text(alphabet=string.printable, max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.from_regex(SAFE_ID, fullmatch=True),
    ),
    header=st.sampled_from(["HTTP_X_REQUEST_ID", "HTTP_X_CORRELATION_ID"]),
)
def test_property_any_header_value_gives_no_5xx_and_a_safe_echo(
    app: Flask, value: str, header: str
) -> None:
    """Hypothesis: for any header value, no 5xx, and the echoed ID matches the allowlist."""
    response = Client(app).get("/id", environ_base={header: value})
    assert response.status_code < 500
    echoed = response.headers["X-Request-ID"]
    assert SAFE_ID.match(echoed)
    if SAFE_ID.match(value):
        assert echoed == value
    assert response.json == {"id": echoed}
