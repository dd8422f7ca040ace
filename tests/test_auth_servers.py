"""Sign-in against real servers over sockets: bodies flask_observe's routes read are capped
(werkzeug), wrong tokens are throttled across gunicorn's workers, and a cookie ended by
sign-out is refused by every worker.

The app is tests/apps/auth_app.py; every response names the process that served it
(``X-Worker-PID``), so the tests can tell that both workers answered.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

#: Real servers, real processes, real time: CI runs these in a step of their own.
pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "srv-Vq3xP9kT2mWc7RzL4nBy8HsJ"
MiB = 1024 * 1024
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """The auth app in a subprocess: werkzeug's threaded server, or gunicorn with 2 workers."""

    def __init__(self, tmp_path: Path, kind: str, **env: str) -> None:
        self.port = free_port()
        self.log = (tmp_path / f"{kind}.log").open("w")
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "FLASK_OBSERVE_AUTH_TOKEN": TOKEN,
            "FLASK_OBSERVE_LOG_DIR": str(tmp_path / "logs"),
            "FLASK_OBSERVE_AUTH_STATE_DIR": str(tmp_path / "auth-state"),
            **env,
        }
        if kind == "werkzeug":
            command = [sys.executable, "-m", "tests.apps.auth_app", str(self.port)]
        else:
            command = [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{self.port}",
                "tests.apps.auth_app:app",
            ]
        self.proc = subprocess.Popen(
            command, env=environment, cwd=str(tmp_path), stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if request(self.port, "GET", "/health/live")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"{kind} did not start: {(tmp_path / f'{kind}.log').read_text()}")

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
def serve(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    started: list[Server] = []

    def start(kind: str, **env: str) -> Server:
        server = Server(tmp_path, kind, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    source: str = "127.0.0.1",
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection from ``source``: status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def sign_in_form(token: str) -> tuple[bytes, dict[str, str]]:
    body = f"token={token}".encode()
    return body, {"Content-Type": "application/x-www-form-urlencoded", **SAME_ORIGIN}


# -- 3. what the sign-in route reads ------------------------------------------------------


def post_huge(port: int, path: str, size: int, chunked: bool) -> int:
    """POST ``size`` bytes of a urlencoded form to ``path``, streamed (never held here), with
    ``Content-Length`` or chunked; the status of the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nSec-Fetch-Site: same-origin\r\n"
            f"{framing}\r\n\r\n"
        ).encode()
    )
    block = b"a" * MiB
    try:
        sent = 0
        while sent < size:
            part = (b"token=" + block)[:MiB] if sent == 0 else block
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            sent += len(part)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server may stop reading once it has answered
        pass
    reply = b""
    while b"\r\n" not in reply:
        data = sock.recv(65536)
        if not data:
            break
        reply += data
    sock.close()
    return int(reply.split(b" ", 2)[1])


def four_huge_posts(server: Server, path: str) -> tuple[list[int], float, float]:
    """Four 100 MB posts to ``path`` at once, two with Content-Length and two chunked: their
    statuses, and how far the server's RSS rose at its peak and afterwards (MB)."""
    process = psutil.Process(server.proc.pid)
    baseline = process.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    statuses: list[int] = []
    posts = [
        threading.Thread(
            target=lambda c=chunked: statuses.append(post_huge(server.port, path, 100 * MiB, c))
        )
        for chunked in (False, True, False, True)
    ]
    for post in posts:
        post.start()
    for post in posts:
        post.join(120)
    done.set()
    sampler.join()
    time.sleep(0.5)  # the server finishes discarding what it did not read
    after = process.memory_info().rss
    return statuses, (peak - baseline) / MiB, (after - baseline) / MiB


def test_four_100_mb_sign_in_posts_leave_the_server_memory_flat(serve: callable) -> None:  # type: ignore[valid-type]
    """Four 100 MB posts to the sign-in route at once (two with Content-Length, two chunked),
    streamed from the client, against werkzeug's server in its own process: each is answered
    413 and the server's RSS is back where it was; at its peak it rose no more than for the
    same posts to a route that reads nothing (werkzeug discards an unread body in reads of
    10 MB). Before, each post was read whole: +600 MB. The host's own route still takes a
    body far bigger than the cap."""
    # Buffers of 1 MiB and more are mapped and unmapped (glibc's threshold fixed there):
    # RSS then follows what is alive, not what the allocator keeps for later.
    server = serve("werkzeug", MALLOC_MMAP_THRESHOLD_=str(MiB))
    for _ in range(3):  # warm: templates, the store, a sign-in
        body, headers = sign_in_form(TOKEN)
        assert request(server.port, "POST", "/observe/logs/login", body, headers)[0] == 303
    upload = request(server.port, "POST", "/upload", b"x" * 64 * 1024)
    assert upload[0] == 200
    assert b'"bytes":65536' in upload[2]
    control = four_huge_posts(server, "/ignore")
    statuses, peak, after = four_huge_posts(server, "/observe/logs/login")
    print(
        f"server RSS: a route that reads nothing: {control[0]}, peak +{control[1]:.1f} MB,"
        f" after +{control[2]:.1f} MB; sign-in: {statuses}, peak +{peak:.1f} MB,"
        f" after +{after:.1f} MB"
    )
    assert control[0] == [204] * 4
    assert statuses == [413] * 4
    assert after < 8, f"the server kept {after:.0f} MB"
    assert peak < control[1] + 32, f"sign-in peaked at +{peak:.0f} MB"


# -- 4. throttling, shared by the workers -------------------------------------------------


def test_600_wrong_tokens_get_429s_shared_across_two_gunicorn_workers(serve: callable) -> None:  # type: ignore[valid-type]
    """600 wrong tokens from one client (sign-in form and bearer header, alternately, each on
    a new connection) to gunicorn with 2 workers: the first 10 get 403, every later one 429
    with a Retry-After, whichever worker answers (the count is shared). The right token from
    that client is refused too (nothing is compared while throttled); from another address
    it opens."""
    server = serve("gunicorn", FLASK_OBSERVE_AUTH_FAILURE_WINDOW_SECONDS="3600")
    statuses: Counter[int] = Counter()
    pids: set[str] = set()
    retry_after: set[int] = set()
    started = time.monotonic()
    for i in range(600):
        if i % 2:
            body, headers = sign_in_form(f"{TOKEN}-wrong{i}")
            status, head, _ = request(server.port, "POST", "/observe/logs/login", body, headers)
        else:
            bearer = {"Authorization": f"Bearer {TOKEN}-wrong{i}"}
            status, head, _ = request(server.port, "GET", "/api/logs/files", headers=bearer)
        statuses[status] += 1
        pids.add(head["X-Worker-PID"])
        if status == 429:
            retry_after.add(int(head["Retry-After"]))
    elapsed = time.monotonic() - started
    print(f"600 wrong tokens in {elapsed:.1f} s: {dict(statuses)}, workers {sorted(pids)}")
    assert len(pids) == 2
    assert statuses == {403: 10, 429: 590}
    assert retry_after
    assert all(1 <= s <= 360 for s in retry_after)
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert request(server.port, "GET", "/api/logs/files", headers=right)[0] == 429
    other = request(server.port, "GET", "/api/logs/files", headers=right, source="127.0.0.2")
    assert other[0] == 200


# -- 5. sign-out ends the session on every worker -----------------------------------------


def _cookie(headers: dict[str, str]) -> str:
    found = re.search(r"flask_observe_logs=([^;]+)", headers.get("Set-Cookie", ""))
    assert found, headers
    return found[1]


def test_a_cookie_replayed_after_sign_out_is_refused_by_both_gunicorn_workers(
    serve: callable,  # type: ignore[valid-type]
) -> None:
    """Sign in, see the cookie work on both workers, sign out, then replay the cookie on new
    connections until both workers have answered many times: refused every time."""
    server = serve("gunicorn")
    body, headers = sign_in_form(TOKEN)
    status, head, _ = request(server.port, "POST", "/observe/logs/login", body, headers)
    assert status == 303
    cookie = {"Cookie": f"flask_observe_logs={_cookie(head)}"}
    before: Counter[str] = Counter()
    # New connections until both workers answered: the kernel hands them out unevenly (200
    # in a row went to one worker on a loaded machine), as the replays below allow for.
    for _ in range(3000):
        status, head, _ = request(server.port, "GET", "/api/logs/files", headers=cookie)
        assert status == 200
        before[head["X-Worker-PID"]] += 1
        if len(before) == 2:
            break
    assert len(before) == 2, "the session works on both workers"
    status, _, _ = request(
        server.port, "POST", "/observe/logs/logout", b"", {**cookie, **SAME_ORIGIN}
    )
    assert status == 303
    replays: Counter[tuple[str, int]] = Counter()
    # Until each worker has refused it many times (the kernel shares connections between the
    # workers unevenly, the more so on a loaded machine), at least 300 replays.
    for sent in range(3000):
        status, head, _ = request(server.port, "GET", "/api/logs/files", headers=cookie)
        replays[(head["X-Worker-PID"], status)] += 1
        if sent >= 299 and len(replays) >= 2 and min(replays.values()) >= 20:
            break
    page = request(server.port, "GET", "/observe/logs", headers=cookie)
    print(f"replays after sign-out: {dict(replays)}; page {page[0]}")
    assert {status for _, status in replays} == {401}
    assert len({pid for pid, _ in replays}) == 2
    assert min(replays.values()) >= 20  # each worker refused it many times
    assert page[0] == 401
    assert b'id="sign-in"' in page[2]
