"""One access mechanism for sensitive endpoints: bearer token or host callback."""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Request
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_observe import ConfigError, Observe
from flask_observe._clock import ManualClock
from flask_observe.state import current_state

TOKEN = "s3cret-ct8aVr8q0GrfjL5LNLOQOFyK"


def guarded_app(make_app: Callable[..., Flask], **config: object) -> Flask:
    app = make_app("authapp", log_stdout=False, **config)
    auth = current_state(app).auth

    @app.get("/secret")
    @auth.require
    def secret() -> str:
        return "the details"

    return app


def test_token_grants_access_and_absence_is_401(make_app: Callable[..., Flask]) -> None:
    """No credentials: 401 with a Bearer challenge; right token: 200; wrong token: 403."""
    client = guarded_app(make_app, auth_token=TOKEN).test_client()
    anonymous = client.get("/secret")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"the details" not in anonymous.data
    assert (
        client.get("/secret", headers={"Authorization": f"Bearer {TOKEN}"}).data == b"the details"
    )
    wrong = client.get("/secret", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 403
    assert client.get("/secret", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401


def test_nothing_configured_means_nobody_gets_in(make_app: Callable[..., Flask]) -> None:
    """With no token and no callback, even an empty bearer token is refused."""
    client = guarded_app(make_app).test_client()
    assert client.get("/secret").status_code == 401
    assert client.get("/secret", headers={"Authorization": "Bearer "}).status_code == 401
    assert not current_state(client.application).auth.configured


def test_callback_decides_and_a_raising_callback_refuses(make_app: Callable[..., Flask]) -> None:
    """The host callback is asked instead of the token; if it raises, access is refused."""

    def only_admins(request: Request) -> bool:
        if request.headers.get("X-Role") == "boom":
            raise RuntimeError("auth backend down")
        return request.headers.get("X-Role") == "admin"

    client = guarded_app(make_app, auth_callback=only_admins, auth_token=TOKEN).test_client()
    assert client.get("/secret", headers={"X-Role": "admin"}).status_code == 200
    assert client.get("/secret", headers={"X-Role": "user"}).status_code == 403
    assert client.get("/secret", headers={"X-Role": "boom"}).status_code == 403
    # The token is not a way around the host's decision.
    assert client.get("/secret", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403


def test_callback_from_an_import_string(make_app: Callable[..., Flask]) -> None:
    """OBSERVE_AUTH_CALLBACK accepts 'module:attr' (so it can come from the environment)."""
    client = guarded_app(make_app, auth_callback="tests.test_auth:allow_all").test_client()
    assert client.get("/secret").status_code == 200


def allow_all(request: Request) -> bool:
    return True


@pytest.mark.parametrize("value", ["short", 12345678901234567890])
def test_weak_token_fails_start_up_without_echoing_it(value: object) -> None:
    """A token under 16 characters stops init_app; the message never shows the value."""
    app = Flask("weak")
    app.config["OBSERVE_AUTH_TOKEN"] = value
    with pytest.raises(ConfigError) as info:
        Observe(app)
    assert str(info.value).startswith("OBSERVE_AUTH_TOKEN:")
    assert str(value) not in str(info.value)


def test_token_is_not_in_the_config_repr() -> None:
    """repr(config) (tracebacks, debug output) does not show the token."""
    app = Flask("repr")
    app.config.update(OBSERVE_AUTH_TOKEN=TOKEN, OBSERVE_LOGGING_ENABLED=False)
    ext = Observe(app)
    try:
        assert TOKEN not in repr(current_state(app).config)
        assert TOKEN not in repr(current_state(app))
    finally:
        ext.shutdown(app)


#: Routes anyone may call; they answer the status and nothing else without credentials.
PUBLIC_STATUS = {"/health/live", "/health/ready", "/health/startup", "/health"}


def test_route_table_every_route_observe_adds_needs_credentials_or_shows_only_a_status(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """With every feature on, each route flask_observe registers (health, /metrics behind
    auth, the log viewer's API, page, assets and sign-in/out) answers 401/403 to no and to
    wrong credentials, except the probes, which show ``{"status": …}`` only. A route a feature
    adds later without auth fails here."""
    app = make_app(
        "routes",
        log_stdout=False,
        log_dir=str(tmp_path),
        auth_token=TOKEN,
        metrics_auth=True,
        logviewer_enabled=True,
        alert_channels=[{"type": "webhook", "url": "https://hooks.example.com/x"}],
        auth_max_failures=1000,  # one wrong token per route; throttling has tests of its own
    )
    logging.getLogger("routes").warning("a line only the authorised may read")
    routes = [
        (method, rule.rule.replace("<file_name>", "app.log").replace("<name>", "logviewer.js"))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    ]
    assert {url for _, url in routes} >= PUBLIC_STATUS | {"/metrics", "/api/logs/search"}
    client = app.test_client()
    for method, url in routes:
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}-wrong"}):
            with client.open(url, method=method, headers=headers) as response:
                if url in PUBLIC_STATUS:
                    assert set(response.json or {}) == {"status"}, (url, response.data)
                else:
                    assert response.status_code in (401, 403), (method, url, headers)
                assert b"only the authorised" not in response.data
    # The same routes do open with the token (the refusals above are not vacuous).
    authorised = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/metrics", headers=authorised).status_code == 200
    assert len(client.get("/health", headers=authorised).json) > 1
    found = client.get("/api/logs/search?text=authorised", headers=authorised).json
    assert [r["record"]["message"] for r in found["results"]] == [
        "a line only the authorised may read"
    ]


# -- how hard the token is to guess (start-up) --------------------------------------------

#: Tokens people type: each refused at start-up (the first two as reported in issue 10, then
#: a leet password, an alphabet, hex digits in order, a repeated part, digits only, and the
#: tokens this project's tests used before).
WEAK = [
    "aaaaaaaaaaaaaaaa",
    "password12345678",
    "P@ssw0rd-P@ssw0rd",
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789abcdef0123456789abcdef",
    "xK9-xK9-xK9-xK9-xK9-xK9-",
    "8302917465019283",
    "viewer-token-0123456789",
    "s3cret-token-0123456789",
    "QWERTYuiop-1234567890",
]


@pytest.mark.parametrize("value", WEAK)
def test_low_entropy_tokens_fail_start_up_saying_how_to_make_one(value: str) -> None:
    """A guessable token stops init_app with a ConfigError naming OBSERVE_AUTH_TOKEN and the
    command that makes a good one, never echoing the value, before anything is set up (no
    route, no handler, no state)."""
    app = Flask("weak")
    app.config.update(OBSERVE_AUTH_TOKEN=value, OBSERVE_LOG_DIR="/nonexistent/never-made")
    handlers = list(logging.getLogger().handlers)
    with pytest.raises(ConfigError) as info:
        Observe(app)
    message = str(info.value)
    assert message.startswith("OBSERVE_AUTH_TOKEN: too easy to guess")
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in message
    assert value not in message
    assert "observe" not in app.extensions
    assert [rule.endpoint for rule in app.url_map.iter_rules()] == ["static"]
    assert logging.getLogger().handlers == handlers


def test_tokens_from_the_documented_generators_are_accepted() -> None:
    """Tokens made as the docs and the sample app make them are never refused: 500 each of
    ``secrets.token_urlsafe(32)`` (the message's command), ``openssl rand -hex 24``
    (``token_hex(24)``), and the sample app's ``token_urlsafe(24)``."""
    from flask_observe._tokens import estimate

    for make in (
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_hex(24),
        lambda: secrets.token_urlsafe(24),
    ):
        lowest = min(estimate(make()).bits for _ in range(500))
        assert lowest >= 100, lowest
    assert parse_token(secrets.token_urlsafe(32))


def parse_token(value: str) -> str | None:
    from flask_observe.config import token

    return token(value)


def test_the_floor_is_64_bits_at_16_hex_digits() -> None:
    """The boundary: 16 hex digits with no pattern estimate exactly 64 bits (4 per digit) and
    are accepted; the same with three of a kind in them (57.6 bits), or 15 of them, are not.
    A character repeated, a sequence or a common word costs what it takes to guess it."""
    from flask_observe._tokens import MIN_BITS, estimate

    assert MIN_BITS == 64
    assert estimate("0f3a9c71e28b4d56").bits == pytest.approx(64.0)
    assert parse_token("0f3a9c71e28b4d56") == "0f3a9c71e28b4d56"
    below = estimate("0f3a9c71e28b4aaa")
    assert below.bits == pytest.approx(13 * 4 + 4 + math.log2(3))
    assert below.patterns == ("repeats",)
    for value in ("0f3a9c71e28b4aaa", "0f3a9c71e28b4d5"):
        with pytest.raises(ValueError, match=r"secrets\.token_urlsafe"):
            parse_token(value)
    # 16 lower-case letters at random: 16 * log2(26) = 75 bits; as a word and a run, far less.
    assert estimate("qhzvbnrtkxwmyjcd").bits == pytest.approx(16 * math.log2(26))
    assert estimate("passwordpassword").bits < 20
    assert estimate("8302917465019283").bits == pytest.approx(16 * math.log2(10))  # 53
    with pytest.raises(ValueError, match="at most 1024"):
        parse_token(secrets.token_urlsafe(800))


# -- throttling wrong tokens ---------------------------------------------------------------


def throttled_app(make_app: Callable[..., Flask], **config: object) -> tuple[Flask, ManualClock]:
    app = guarded_app(make_app, auth_token=TOKEN, **config)
    clock = ManualClock()
    current_state(app).auth.clock = clock
    return app, clock


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_ten_wrong_tokens_then_429_with_retry_after_and_nothing_compared(
    make_app: Callable[..., Flask],
) -> None:
    """A client's first 10 wrong tokens get 403, the 11th a 429 with ``Retry-After: 6`` (10
    drain per 60 s); while throttled the right token is refused too (429: a throttled guess
    learns nothing). After Retry-After one more try is allowed; after a quiet minute, a burst
    of 10 again."""
    app, clock = throttled_app(make_app)
    client = app.test_client()
    statuses = [client.get("/secret", headers=bearer(f"wrong-{i}")).status_code for i in range(10)]
    assert statuses == [403] * 10
    refused = client.get("/secret", headers=bearer("wrong-10"))
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "6"
    assert refused.json == {"error": "too many wrong tokens from this address; try again later"}
    assert client.get("/secret", headers=bearer(TOKEN)).status_code == 429
    assert client.get("/secret").status_code == 401  # no token: nothing to throttle
    clock.advance(5)
    assert client.get("/secret", headers=bearer(TOKEN)).headers["Retry-After"] == "1"
    clock.advance(1)
    assert client.get("/secret", headers=bearer(TOKEN)).data == b"the details"
    assert client.get("/secret", headers=bearer("wrong-11")).status_code == 403
    assert client.get("/secret", headers=bearer("wrong-12")).status_code == 429
    clock.advance(60)
    statuses = [client.get("/secret", headers=bearer(f"again-{i}")).status_code for i in range(11)]
    assert statuses == [403] * 10 + [429]


def test_throttling_is_per_client_and_respects_proxies_only_through_proxyfix(
    make_app: Callable[..., Flask],
) -> None:
    """Another address is not throttled by this one's failures. ``X-Forwarded-For`` alone
    changes nothing (an attacker cannot rotate it); behind the host's ``ProxyFix`` it names
    the client. IPv6 clients count by their /64."""
    app, _ = throttled_app(make_app)
    client = app.test_client()

    def status(token: str, addr: str = "127.0.0.1", **headers: str) -> int:
        environ = {"REMOTE_ADDR": addr}
        return client.get(
            "/secret", headers={**bearer(token), **headers}, environ_base=environ
        ).status_code

    for i in range(10):
        assert status(f"wrong-{i}", **{"X-Forwarded-For": f"198.51.100.{i}"}) == 403
    assert status("wrong", **{"X-Forwarded-For": "198.51.100.99"}) == 429
    assert status(TOKEN, addr="127.0.0.2") == 200
    # IPv6: the /64 is one client; the next /64 another.
    for i in range(10):
        assert status("wrong", addr=f"2001:db8:0:7::{i + 1:x}") == 403
    assert status(TOKEN, addr="2001:db8:0:7:ffff::1") == 429
    assert status(TOKEN, addr="2001:db8:0:8::1") == 200

    proxied, _ = throttled_app(make_app)
    proxied.wsgi_app = ProxyFix(proxied.wsgi_app, x_for=1)  # type: ignore[method-assign]
    behind = proxied.test_client()

    def via_proxy(token: str, forwarded_for: str) -> int:
        headers = {**bearer(token), "X-Forwarded-For": forwarded_for}
        return behind.get("/secret", headers=headers).status_code

    for _ in range(10):
        assert via_proxy("wrong", "203.0.113.5") == 403
    assert via_proxy(TOKEN, "203.0.113.5") == 429
    assert via_proxy(TOKEN, "203.0.113.6") == 200


def test_health_details_and_metrics_are_throttled_probes_are_not(
    make_app: Callable[..., Flask],
) -> None:
    """Wrong tokens on ``/health`` (which shows the status, without details) and ``/metrics``
    count; once throttled both answer 429, while probes without a token still answer."""
    app, _ = throttled_app(make_app, metrics_auth=True)
    client = app.test_client()
    for i in range(5):
        assert set(client.get("/health", headers=bearer(f"wrong-{i}")).json) == {"status"}
        assert client.get("/metrics", headers=bearer(f"wrong-{i}")).status_code == 403
    assert client.get("/health", headers=bearer(TOKEN)).status_code == 429
    assert client.get("/metrics", headers=bearer(TOKEN)).headers["Retry-After"] == "6"
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").json == {"status": "pass"}


def test_rotating_addresses_cannot_grow_the_remembered_clients_without_bound(
    make_app: Callable[..., Flask],
) -> None:
    """2,000 clients, each with one wrong token, against a store that remembers at most 100:
    it never holds more than 100 (the rows nearest to draining go first), and the newest
    client's failures are kept."""
    from flask_observe._authstore import MAX_CLIENTS, AuthStore

    app, clock = throttled_app(make_app)
    store = current_state(app).auth.store
    assert store is not None
    store.max_clients = 100
    client = app.test_client()
    for i in range(2000):
        addr = f"10.{i // 250}.{i % 250}.1"
        assert (
            client.get(
                "/secret", headers=bearer("x" * 20), environ_base={"REMOTE_ADDR": addr}
            ).status_code
            == 403
        )
        clock.advance(0.001)
    assert store.clients() == 100
    assert store.drained_at("10.7.249.1", clock.time()) > clock.time()
    # The default bound, and rows go once they drained: nothing left after a quiet minute.
    assert AuthStore(store.path).max_clients == MAX_CLIENTS == 10_000
    clock.advance(61)
    store.add_failure("10.99.0.1", clock.time(), 6.0)
    assert store.clients() == 1


def test_a_broken_store_leaves_the_token_working(
    make_app: Callable[..., Flask], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When the shared store cannot be used (here its directory is a file), wrong tokens
    still get 403 and the right one 200; the failure is logged, throttling is off."""
    from flask_observe._authstore import AuthStore

    app, _ = throttled_app(make_app)
    (tmp_path / "not-a-dir").write_text("")
    current_state(app).auth.store = AuthStore(tmp_path / "not-a-dir" / "auth.sqlite3")
    client = app.test_client()
    with caplog.at_level(logging.ERROR, "flask_observe"):
        assert [client.get("/secret", headers=bearer("w")).status_code for _ in range(12)] == [
            403
        ] * 12
    assert client.get("/secret", headers=bearer(TOKEN)).status_code == 200
    assert "the shared sign-in state at" in caplog.text
    assert "(reading failed attempts) failed" in caplog.text


# -- the shared state's directory ----------------------------------------------------------


def test_the_default_state_directory_must_be_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without OBSERVE_AUTH_STATE_DIR the state goes to ``flask_observe-<uid>`` in the temp
    directory, made mode 0700 on first use; one open to others or owned by another user stops
    start-up with a ConfigError naming the key (before anything is set up)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    private = tmp_path / f"flask_observe-{os.geteuid()}"

    def start() -> Flask:
        app = Flask("statedir")
        app.config.update(OBSERVE_AUTH_TOKEN=TOKEN, OBSERVE_LOGGING_ENABLED=False)
        Observe(app)
        return app

    app = start()
    client = app.test_client()
    assert client.get("/health", headers=bearer("wrong")).status_code == 200
    assert private.is_dir()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    (db,) = private.glob("auth-statedir-*.sqlite3")
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    Observe.shutdown(Observe(), app)

    private.chmod(0o777)
    with pytest.raises(ConfigError, match=r"^OBSERVE_AUTH_STATE_DIR: .* is open to other users"):
        start()
    private.chmod(0o700)
    os.chown(private, 65534, 65534)
    with pytest.raises(ConfigError, match=r"^OBSERVE_AUTH_STATE_DIR: .* belongs to another user"):
        start()


def test_a_configured_state_directory_that_is_a_file_stops_start_up(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"^OBSERVE_AUTH_STATE_DIR: .* is not a directory"):
        make_app("badstate", auth_token=TOKEN, auth_state_dir=str(tmp_path / "file"))


# -- the refusal table of docs/configuration.md ---------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def refusal_table() -> dict[str, dict[str, str]]:
    """docs/configuration.md's table of what an unauthorised caller gets: row -> column ->
    cell, the columns named by their first words."""
    text = DOCS.read_text()
    start = text.index("What a caller who is not authorised gets depends on the endpoint")
    lines = text[start:].splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("|")) :]
    table = lines[: next(i for i, line in enumerate(lines) if not line.startswith("|"))]
    rows = [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in table]
    header, _, *body = rows
    columns = ["missing", "wrong", "throttled", "callback"]
    assert len(header) == len(columns) + 1
    return {row[0]: dict(zip(columns, row[1:], strict=True)) for row in body}


def _refusal_rows() -> list[tuple[str, str]]:
    return [(row, column) for row, cells in refusal_table().items() for column in cells]


@pytest.mark.parametrize(("row", "column"), _refusal_rows())
def test_the_refusal_table_in_the_docs_is_what_the_endpoints_answer(
    make_app: Callable[..., Flask], tmp_path: Path, row: str, column: str
) -> None:
    """Every cell of docs/configuration.md's refusal table, asked of the real endpoints: the
    first status code the cell names, and the headers and bodies it promises
    (``WWW-Authenticate``, ``Retry-After``, the sign-in form, the status only)."""
    cell = refusal_table()[row][column]
    expected = int(re.search(r"`(\d{3})`", cell)[1])  # type: ignore[index]
    config: dict[str, object] = {
        "log_stdout": False,
        "log_dir": str(tmp_path / "logs"),
        "logviewer_enabled": True,
        "metrics_auth": True,
        "auth_max_failures": 2,
    }
    if column == "callback":
        config["auth_callback"] = lambda request: False
    else:
        config["auth_token"] = TOKEN
    app = make_app("refusals", **config)

    @app.get("/mine")
    @Observe.protected
    def mine() -> str:
        return "the host's own"

    client = app.test_client()
    right = {"Authorization": f"Bearer {TOKEN}"}
    wrong = {"Authorization": f"Bearer {TOKEN}-typo"}
    headers = {"missing": {}, "wrong": wrong, "throttled": right, "callback": right}[column]

    def ask(path: str, address: str) -> Any:
        """The request of the cell, from its own client address (wrong tokens count per
        client); a throttled client sent two wrong tokens first."""
        environ = {"REMOTE_ADDR": address}
        if column == "throttled":
            for _ in range(2):
                client.get("/api/logs/files", headers=wrong, environ_base=environ)
        if "sign-in" in row:
            token = {"missing": "", "wrong": f"{TOKEN}-typo"}.get(column, TOKEN)
            return client.post(path, data={"token": token}, environ_base=environ)
        return client.get(path, headers=headers, environ_base=environ)

    if row.startswith("log viewer API"):
        paths = ["/api/logs/files", "/metrics", "/mine"]
    elif row.startswith("log viewer page"):
        paths = ["/observe/logs"]
    elif row.startswith("log viewer sign-in"):
        paths = ["/observe/logs/login"]
    else:
        assert row.startswith("health")
        paths = ["/health", "/health/live", "/health/ready", "/health/startup"]
    for number, path in enumerate(paths, 1):
        response = ask(path, f"10.9.0.{number}")
        assert response.status_code == expected, (path, cell, response.get_data(as_text=True))
        assert ("WWW-Authenticate" in response.headers) == ("WWW-Authenticate" in cell), path
        assert ("Retry-After" in response.headers) == ("Retry-After" in cell), path
        if "sign-in form" in cell and "no sign-in form" not in cell:
            assert 'name="token"' in response.get_data(as_text=True), path
        if "the right one" in cell:
            assert "That token is not the right one." in response.get_data(as_text=True)
        if "status" in cell and "only" in cell:
            assert set(response.json) == {"status"}, path
