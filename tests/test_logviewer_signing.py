"""What the viewer hands out and takes back — search cursors, live-tail event IDs — cannot be
forged, and never makes it start inside a line: every byte offset of a line full of planted
secrets, tried as a forged cursor and as a forged ``Last-Event-ID``, reveals none of them."""

from __future__ import annotations

import base64
import contextlib
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from flask import Flask

from flask_observe import Observe
from flask_observe.logviewer import LogViewer
from flask_observe.logviewer.follow import Mark, Position
from flask_observe.logviewer.query import Cursor, Query
from flask_observe.state import current_state

from .conftest import LiveServer
from .test_logviewer_views import AUTH, TOKEN, EventReader

#: Planted secrets, each hidden by redaction when the line is read whole.
SECRETS = {
    "password field": "hunter2-Pw7c1fQz",
    "api_key field": "ak-live-93hf2kd8Lq",
    "token field": "tk-5f8e2a9b1cXy",
    "client_secret field": "cs-8d7f6e5a4bWv",
    "cookie field": "sid-3b2a1f0eUt",
    "bearer header": "brr-0a9f8e7dSrQp",
    "url password": "urlpw-4e5d6cNm",
    "jwt": (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
        ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    ),
    "aws key id": "AKIAIOSFODNN7EXAMPLE",
}
#: A secret counts as revealed when any run of this many of its characters is shown.
WINDOW = 6


def planted_line() -> bytes:
    return orjson.dumps(
        {
            "timestamp": "2026-05-01T10:00:00.000Z",
            "level": "warning",
            "logger": "auth",
            "message": (
                f"upstream call with Authorization: Bearer {SECRETS['bearer header']} to"
                f" postgresql://alice:{SECRETS['url password']}@db.internal/app"
                f" id={SECRETS['jwt']}"
            ),
            "password": SECRETS["password field"],
            "api_key": SECRETS["api_key field"],
            "token": SECRETS["token field"],
            "client_secret": SECRETS["client_secret field"],
            "cookie": SECRETS["cookie field"],
            "aws": SECRETS["aws key id"],
        }
    )


def shown(body: bytes) -> bytes:
    """An answer as it shows the log: each of the viewer's own signed tokens (``cursor``,
    ``next``: base64 of a position, ``.``, an HMAC) replaced by the position it carries.
    Scanned as base64, a token's digits spell a run of the JWT's base64 now and then (a
    timestamp ``…1234…`` gives ``xMjM0N``, as the JWT's ``"1234567890"`` does)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if isinstance(data, dict):
        for key in ("cursor", "next"):
            token = data.get(key)
            if isinstance(token, str) and "." in token:
                payload = token.split(".", 1)[0]
                data[key] = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return orjson.dumps(data, default=bytes.decode)


def revealed(body: bytes) -> set[str]:
    found = set()
    for name, value in SECRETS.items():
        pieces = {value[i : i + WINDOW].encode() for i in range(len(value) - WINDOW + 1)}
        if any(piece in body for piece in pieces):
            found.add(name)
    return found


BEFORE = b'{"timestamp":"2026-05-01T09:59:59.000Z","level":"info","message":"before"}\n'
AFTER = b'{"timestamp":"2026-05-01T10:00:01.000Z","level":"info","message":"after-sentinel"}\n'


@pytest.fixture
def planted(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    """A real server reading ``logs/app.log``: a line before, the planted line, a sentinel."""
    logs = tmp_path / "read"
    logs.mkdir()
    path = logs / "app.log"
    path.write_bytes(BEFORE + planted_line() + b"\n" + AFTER)
    app = make_app(
        "signingapp",
        log_stdout=False,
        log_dir=str(tmp_path / "own"),
        logviewer_dir=str(logs),
        logviewer_enabled=True,
        auth_token=TOKEN,
        logviewer_max_followers=64,
    )
    with LiveServer(app) as server:
        try:
            yield server, path
        finally:
            viewer = current_state(app).get(LogViewer)
            assert viewer is not None
            viewer.close()


def test_whole_line_is_redacted(planted: tuple[LiveServer, Path]) -> None:
    """Read from its start, the planted line shows none of its secrets (the baseline)."""
    server, _ = planted
    response = requests.get(f"{server.url}/api/logs/search", headers=AUTH, timeout=10)
    assert response.status_code == 200
    assert len(response.json()["results"]) == 3
    assert revealed(shown(response.content)) == set()


def _line_offsets(path: Path) -> range:
    start = len(BEFORE)
    return range(start, start + len(planted_line()) + 1)


def _legacy_cursor(path: Path, offset: int, newest_first: bool) -> str:
    """A cursor as an attacker makes it: base64 JSON, the filter fingerprint recomputed."""
    head = path.read_bytes().split(b"\n", 1)[0] + b"\n"
    fingerprint = f"{zlib.crc32(head):08x}{len(head):x}"
    query = Query(newest_first=newest_first).fingerprint()
    data = [1, "app.log", fingerprint, offset, [1, 0.0, "app.log"], query, None, None]
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def test_forged_cursors_at_every_byte_offset_reveal_nothing(
    planted: tuple[LiveServer, Path],
) -> None:
    """Every byte offset of the planted line, as a hand-made cursor (oldest and newest
    first), and the same cursors with a byte changed: each is refused with 400, and no
    answer shows any piece of a secret."""
    server, path = planted
    session = requests.Session()
    leaks: dict[str, int] = {}
    statuses: dict[int, int] = {}
    for offset in _line_offsets(path):
        for order, newest in (("oldest", False), ("newest", True)):
            cursor = _legacy_cursor(path, offset, newest)
            for value in (cursor, cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")):
                response = session.get(
                    f"{server.url}/api/logs/search",
                    params={"order": order, "cursor": value},
                    headers=AUTH,
                    timeout=10,
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                for name in revealed(shown(response.content)):
                    leaks[name] = leaks.get(name, 0) + 1
    print(f"\nforged cursors: statuses {statuses}; secrets revealed {sorted(leaks)}")
    assert leaks == {}, f"{len(leaks)} of {len(SECRETS)} secrets revealed: {sorted(leaks)}"
    assert set(statuses) == {400}


def _stream_body(url: str, last_event_id: str) -> tuple[int, bytes]:
    """Open the live tail resuming at ``last_event_id``; read until the sentinel line (or a
    refusal) and return the status and everything received."""
    reader = EventReader(url, {**AUTH, "Last-Event-ID": last_event_id})
    try:
        if reader.response.status != 200:
            return reader.response.status, reader.response.read()
        seen = reader.until(lambda e: e[0] == "line" and b"after-sentinel" in orjson.dumps(e[1]))
        return 200, b"".join(orjson.dumps(e[1]) for e in seen)
    finally:
        reader.close()


def test_forged_last_event_ids_at_every_byte_offset_reveal_nothing(
    planted: tuple[LiveServer, Path],
) -> None:
    """Every byte offset of the planted line as a hand-made ``Last-Event-ID``
    (``<device>-<inode>-<offset>``): each is refused with 400, no secret is shown."""
    server, path = planted
    st = os.stat(path)
    url = f"{server.url}/api/logs/tail/app.log?follow=1"
    leaks: dict[str, int] = {}
    statuses: dict[int, int] = {}
    for n, offset in enumerate(_line_offsets(path)):
        status, body = _stream_body(url, f"{st.st_dev}-{st.st_ino}-{offset}")
        statuses[status] = statuses.get(status, 0) + 1
        for name in revealed(body):
            leaks[name] = leaks.get(name, 0) + 1
        if n % 32 == 31:  # closed streams give their slot back at their next write
            with path.open("ab") as fh:
                fh.write(b'{"message":"nudge"}\n')
    print(f"\nforged event IDs: statuses {statuses}; secrets revealed {sorted(leaks)}")
    assert leaks == {}, f"{len(leaks)} of {len(SECRETS)} secrets revealed: {sorted(leaks)}"
    assert set(statuses) == {400}


def _viewer(server: LiveServer) -> LogViewer:
    viewer = current_state(server.server.app).get(LogViewer)
    assert viewer is not None
    return viewer


def test_signed_cursors_at_every_byte_offset_still_start_at_a_line(
    planted: tuple[LiveServer, Path],
) -> None:
    """A cursor the viewer signed but whose offset is inside a line (the file changed
    under it): the page starts at the next line start, oldest first, or takes the line
    whole, newest first, so no answer shows any piece of a secret."""
    server, path = planted
    viewer = _viewer(server)
    head = path.read_bytes().split(b"\n", 1)[0] + b"\n"
    session = requests.Session()
    leaks: dict[str, int] = {}
    for offset in _line_offsets(path):
        for order, newest in (("oldest", False), ("newest", True)):
            cursor = Cursor(
                file="app.log",
                fingerprint=f"{zlib.crc32(head):08x}{len(head):x}",
                offset=offset,
                key=(1, 0.0, "app.log"),
                query=Query(newest_first=newest).fingerprint(),
            )
            response = session.get(
                f"{server.url}/api/logs/search",
                params={"order": order, "cursor": cursor.encode(viewer.signer)},
                headers=AUTH,
                timeout=10,
            )
            assert response.status_code == 200
            for name in revealed(shown(response.content)):
                leaks[name] = leaks.get(name, 0) + 1
            offsets = [r["offset"] for r in response.json()["results"]]
            assert set(offsets) <= {0, len(BEFORE), len(BEFORE) + len(planted_line()) + 1}
    assert leaks == {}


def test_a_cursor_or_position_the_server_gave_breaks_when_altered(
    planted: tuple[LiveServer, Path],
) -> None:
    """Changing any one character of a real cursor, or of a real tail position, is a 400."""
    server, _ = planted
    first = requests.get(
        f"{server.url}/api/logs/search?limit=1&order=oldest", headers=AUTH, timeout=10
    ).json()
    position = requests.get(
        f"{server.url}/api/logs/tail/app.log?lines=0", headers=AUTH, timeout=10
    ).json()["next"]
    for value, url, param in (
        (first["cursor"], "/api/logs/search?limit=1&order=oldest", "cursor"),
        (position, "/api/logs/tail/app.log", "after"),
    ):
        assert (
            requests.get(
                f"{server.url}{url}", params={param: value}, headers=AUTH, timeout=10
            ).status_code
            == 200
        )
        for i in range(0, len(value), 3):
            changed = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]
            response = requests.get(
                f"{server.url}{url}", params={param: changed}, headers=AUTH, timeout=10
            )
            assert response.status_code == 400, (param, i)
            assert param in response.json()["error"]


def _signed_positions(viewer: LogViewer, path: Path) -> Iterator[tuple[int, str]]:
    st = os.stat(path)
    for offset in _line_offsets(path):
        mark = Mark((st.st_dev, st.st_ino), offset, "", None)
        yield offset, Position((mark,), 0.0).encode(viewer.signer)


def test_signed_positions_at_every_byte_offset_still_start_at_a_line(
    planted: tuple[LiveServer, Path],
) -> None:
    """A tail position the viewer signed but inside a line: the polling tail and the live
    stream both go on at the next line start; no piece of a secret is shown."""
    server, path = planted
    viewer = _viewer(server)
    session = requests.Session()
    url = f"{server.url}/api/logs/tail/app.log"
    leaks: dict[str, int] = {}
    for n, (offset, signed) in enumerate(_signed_positions(viewer, path)):
        polled = session.get(url, params={"after": signed}, headers=AUTH, timeout=10)
        assert polled.status_code == 200
        status, streamed = _stream_body(f"{url}?follow=1", signed)
        assert status == 200
        for body in (shown(polled.content), streamed):
            for name in revealed(body):
                leaks[name] = leaks.get(name, 0) + 1
        first = polled.json()["results"][0]
        assert first["offset"] in (len(BEFORE), len(BEFORE) + len(planted_line()) + 1), offset
        if n % 32 == 31:  # closed streams give their slot back at their next write
            with path.open("ab") as fh:
                fh.write(b'{"message":"nudge"}\n')
    assert leaks == {}


@contextlib.contextmanager
def _two_workers(logs: Path, **config: Any) -> Iterator[list[Flask]]:
    """Two apps with the same settings over the same files: two worker processes."""
    made = []
    try:
        for n in (1, 2):
            app = Flask(f"worker{n}")
            app.config.update({k.upper(): v for k, v in config.items() if k == "secret_key"})
            app.config.update(
                {f"OBSERVE_{k.upper()}": v for k, v in config.items() if k != "secret_key"}
            )
            app.config.update(
                OBSERVE_LOG_STDOUT=False,
                OBSERVE_LOG_DIR=str(logs.parent / f"own{n}"),
                OBSERVE_LOGVIEWER_DIR=str(logs),
                OBSERVE_LOGVIEWER_ENABLED=True,
            )
            ext = Observe(app)
            made.append((ext, app))
        yield [app for _, app in made]
    finally:
        for ext, app in reversed(made):
            ext.shutdown(app)


def _operator(request: Any) -> bool:
    return request.headers.get("X-Operator") == "yes"


@pytest.mark.parametrize(
    ("config", "shared"),
    [
        ({"auth_token": TOKEN}, True),
        ({"auth_callback": _operator, "secret_key": "host-secret-key-0123456789"}, True),
        ({"auth_callback": _operator}, False),
    ],
    ids=["token", "secret_key", "neither"],
)
def test_which_workers_accept_each_others_cursors(
    tmp_path: Path, config: dict[str, Any], shared: bool
) -> None:
    """The key comes from the token, else the host's SECRET_KEY: a cursor made by one worker
    pages on in another. With neither, each process has its own key, and another worker's
    cursor is a 400 that says why."""
    logs = tmp_path / "read"
    logs.mkdir()
    (logs / "app.log").write_bytes(BEFORE * 3)
    headers = {**AUTH, "X-Operator": "yes"}
    with _two_workers(logs, **config) as (one, other):
        first = one.test_client().get("/api/logs/search?limit=1", headers=headers).json
        assert first["cursor"]
        again = other.test_client().get(
            f"/api/logs/search?limit=1&cursor={first['cursor']}", headers=headers
        )
        assert again.status_code == (200 if shared else 400)
        if not shared:
            assert "signed by another process" in again.json["error"]
