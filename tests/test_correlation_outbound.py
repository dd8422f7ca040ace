"""Outgoing requests carry the correlation ID to allowlisted hosts only (real HTTP)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests
from flask import Flask, redirect, request

from flask_observe import Observe
from flask_observe.correlation.outbound import HostAllowlist

from .conftest import LiveServer


def upstream_app(name: str) -> tuple[Flask, list[str | None]]:
    """A real HTTP service recording the X-Request-ID of each call it receives."""
    app = Flask(name)
    seen: list[str | None] = []

    @app.get("/echo")
    def echo() -> str:
        seen.append(request.headers.get("X-Request-ID"))
        return "ok"

    @app.get("/bounce")
    def bounce() -> object:
        seen.append(request.headers.get("X-Request-ID"))
        return redirect(request.args["to"])

    return app, seen


@pytest.fixture
def upstreams() -> Iterator[tuple[LiveServer, list[str | None], LiveServer, list[str | None]]]:
    allowed_app, allowed_seen = upstream_app("allowed")
    other_app, other_seen = upstream_app("other")
    with LiveServer(allowed_app) as allowed, LiveServer(other_app) as other:
        yield allowed, allowed_seen, other, other_seen


def caller(make_app: Callable[..., Flask], allowed_port: int) -> Flask:
    app = make_app("caller", log_stdout=False, propagate_hosts=[f"127.0.0.1:{allowed_port}"])

    @app.get("/call")
    def call() -> str:
        headers = {"X-Request-ID": request.args["explicit"]} if "explicit" in request.args else {}
        requests.get(request.args["url"], headers=headers, timeout=5)
        return "done"

    return app


def test_allowed_host_receives_the_id(make_app: Callable[..., Flask], upstreams: tuple) -> None:
    """A call to an allowlisted host:port carries the current request's ID."""
    allowed, allowed_seen, _, _ = upstreams
    app = caller(make_app, allowed.port)
    app.test_client().get(
        "/call", query_string={"url": allowed.url + "/echo"}, headers={"X-Request-ID": "out-1"}
    )
    assert allowed_seen == ["out-1"]


def test_other_hosts_receive_nothing(make_app: Callable[..., Flask], upstreams: tuple) -> None:
    """Another port, or the same machine under another name, gets no ID."""
    allowed, _, other, other_seen = upstreams
    app = caller(make_app, allowed.port)
    client = app.test_client()
    client.get("/call", query_string={"url": other.url + "/echo"}, headers={"X-Request-ID": "o"})
    localhost_url = f"http://localhost:{other.port}/echo"
    client.get("/call", query_string={"url": localhost_url}, headers={"X-Request-ID": "o"})
    assert other_seen == [None, None]


def test_redirect_to_other_host_drops_the_id(
    make_app: Callable[..., Flask], upstreams: tuple
) -> None:
    """An allowed host redirecting to a third party does not forward our ID there."""
    allowed, allowed_seen, other, other_seen = upstreams
    app = caller(make_app, allowed.port)
    url = f"{allowed.url}/bounce?to={other.url}/echo"
    app.test_client().get("/call", query_string={"url": url}, headers={"X-Request-ID": "redir"})
    assert allowed_seen == ["redir"]
    assert other_seen == [None]


def test_explicit_header_is_not_overwritten(
    make_app: Callable[..., Flask], upstreams: tuple
) -> None:
    """A header the caller set itself wins."""
    allowed, allowed_seen, _, _ = upstreams
    app = caller(make_app, allowed.port)
    app.test_client().get(
        "/call",
        query_string={"url": allowed.url + "/echo", "explicit": "mine"},
        headers={"X-Request-ID": "ours"},
    )
    assert allowed_seen == ["mine"]


def test_outside_a_request_nothing_is_added(
    make_app: Callable[..., Flask], upstreams: tuple
) -> None:
    """Calls made outside any request (no ID bound) are untouched."""
    allowed, allowed_seen, _, _ = upstreams
    caller(make_app, allowed.port)
    requests.get(allowed.url + "/echo", timeout=5)
    assert allowed_seen == [None]


def test_shutdown_restores_requests_send() -> None:
    """The wrapper (on the adapter, the last step before the wire) is installed once and the
    original send comes back with the last app."""
    from requests.adapters import HTTPAdapter

    original = HTTPAdapter.send
    one, two = Flask("one"), Flask("two")
    ext_one = Observe(one, log_stdout=False, propagate_hosts=["a.example"])
    ext_two = Observe(two, log_stdout=False, propagate_hosts=["b.example"])
    wrapped = HTTPAdapter.send
    assert wrapped is not original
    ext_one.shutdown(one)
    assert HTTPAdapter.send is wrapped
    ext_two.shutdown(two)
    assert HTTPAdapter.send is original


@pytest.mark.parametrize(
    ("patterns", "url", "allowed"),
    [
        (["api.example.com"], "https://api.example.com/x", True),
        (["api.example.com"], "https://API.Example.com./x", True),
        (["api.example.com"], "https://evil.com/?api.example.com", False),
        (["api.example.com"], "https://api.example.com.evil.com/", False),
        (["api.example.com:8443"], "https://api.example.com:8443/", True),
        (["api.example.com:8443"], "https://api.example.com/", False),
        (["127.0.0.1:80"], "http://127.0.0.1/", True),
        (["*.internal"], "http://svc.internal:9000/", True),
        (["*.internal"], "http://internal/", False),
        (["*.internal"], "http://evilinternal/", False),
        (["[::1]:5000"], "http://[::1]:5000/", True),
        (["*"], "http://anything/", True),
        ([], "http://anything/", False),
        (["x.com"], "not a url", False),
        (["x.com"], "http://x.com:notaport/", True),
    ],
)
def test_allowlist_matching(patterns: list[str], url: str, allowed: bool) -> None:
    """Host patterns: exact (any port), host:port, *.suffix, [v6]:port, and *."""
    assert HostAllowlist(patterns).allows(url) is allowed


def test_an_outbound_hook_raising_leaves_the_next_ones_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The outbound hooks (Prometheus metrics, OTLP metrics, the console's rollups) composed
    into one: the first raising is logged, and the ones after it still get the call."""
    import logging

    from flask_observe.correlation.setup import _compose_outbound
    from flask_observe.hooks import OutboundCall

    seen: list[tuple[str, OutboundCall]] = []

    def broken(call: OutboundCall) -> None:
        seen.append(("broken", call))
        raise RuntimeError("metrics broke")

    def after(call: OutboundCall) -> None:
        seen.append(("after", call))

    composed = _compose_outbound([broken, after, after])
    assert composed is not None
    call = OutboundCall("GET", "https://api.example.com/", 200, None, 0.01, {}, 0)
    with caplog.at_level(logging.ERROR, logger="flask_observe"):
        composed(call)
    assert seen == [("broken", call), ("after", call), ("after", call)]
    (failure,) = [r for r in caplog.records if "broken" in r.getMessage()]
    assert failure.exc_info is not None
    assert failure.exc_info[0] is RuntimeError
