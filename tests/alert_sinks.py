"""Local receivers for the alerting tests: a webhook sink, a connection counter, a hung port;
and a test clock whose readers can be waited for."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request

from flask_observe._clock import ManualClock

from .conftest import LiveServer


class WatchedClock(ManualClock):
    """A :class:`ManualClock` that counts its readings, so a test can wait until a background
    thread (the alert sender, the ticker) has looked at it since the test moved it, instead of
    sleeping and hoping it did."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        super().__init__(start)
        self.readings = 0

    def monotonic(self) -> float:
        self.readings += 1
        return super().monotonic()

    def settle(self, readings: int = 6, timeout: float = 10.0) -> None:
        """Wait until the clock has been read ``readings`` more times (by the threads that
        use it: every loop of theirs reads it), i.e. they have seen its current time."""
        target = self.readings + readings
        deadline = time.monotonic() + timeout
        while self.readings < target:
            if time.monotonic() > deadline:
                raise AssertionError("nothing read the clock: is the thread running?")
            time.sleep(0.005)


class Sink:
    """A webhook receiver on loopback recording each POST (time, path, JSON body).

    ``responder(n)`` chooses the answer to the n-th request (default 200).
    """

    def __init__(
        self, responder: Callable[[int], tuple[int, dict[str, str]]] | None = None
    ) -> None:
        self.received: list[tuple[float, str, Any]] = []
        self.responder = responder or (lambda n: (200, {}))
        app = Flask("sink")

        @app.post("/<path:path>")
        def hook(path: str) -> Response:
            self.received.append((time.monotonic(), path, request.get_json(silent=True)))
            status, headers = self.responder(len(self.received))
            return Response("ok", status=status, headers=headers)

        self.server = LiveServer(app)
        self.url = self.server.url

    def __enter__(self) -> Sink:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[float, str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)


class Listener:
    """A TCP listener that counts connections (accepts and closes them)."""

    def __init__(self, host: str = "127.0.0.1", hang: bool = False) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.hang = hang
        self._peers: list[Any] = []
        self._held: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self._peers.append(peer)
            self.connections += 1
            if self.hang:
                self._held.append(conn)  # accept, never answer
            else:
                conn.close()

    def settled(self, timeout: float = 5.0) -> int:
        """The connections taken so far, once every connection made before this call has been
        taken: it connects once itself and waits until that probe is accepted (the backlog
        is served in order); the probe is not counted."""
        family = self.sock.family
        host = self.sock.getsockname()[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.connect((host, self.port))
            mine = probe.getsockname()
            deadline = time.monotonic() + timeout
            while not any(p[:2] == mine[:2] for p in list(self._peers)):
                if time.monotonic() > deadline:
                    raise AssertionError("the listener did not accept its own probe")
                time.sleep(0.005)
        self._peers = [p for p in self._peers if p[:2] != mine[:2]]
        self.connections -= 1
        return self.connections

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        for conn in self._held:
            conn.close()
        self.sock.close()


class HangingProxy:
    """A TCP proxy on loopback to ``upstream`` (host, port) that can hang: :meth:`hang` stops
    forwarding in both directions (connections stay open, new ones are accepted and left
    waiting: a database that stopped answering), :meth:`release` carries on. :meth:`cut`
    closes every connection and refuses new ones until :meth:`release` (a partition: what
    was not forwarded yet never arrives, and the server keeps its data)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def hang(self) -> None:
        self._forwarding.clear()

    def release(self) -> None:
        self._cut.clear()
        self._forwarding.set()

    def cut(self) -> None:
        """Close every connection now (returns once they are closed) and refuse new ones."""
        self._cut.set()
        for thread in list(self._threads):
            thread.join(5)

    def _accept(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            if self._cut.is_set():
                client.close()
                continue
            thread = threading.Thread(target=self._pipe, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pipe(self, client: socket.socket) -> None:
        import select

        upstream: socket.socket | None = None
        try:
            while not self._stop.is_set() and not self._cut.is_set():
                if not self._forwarding.wait(0.05):
                    continue  # hung: read nothing, send nothing
                if upstream is None:
                    upstream = socket.create_connection(self.upstream, timeout=5)
                readable, _, _ = select.select([client, upstream], [], [], 0.05)
                for source in readable:
                    if not self._forwarding.is_set() or self._cut.is_set():
                        break
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is client else client).sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def __enter__(self) -> HangingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._accepting.join(2)
        for thread in self._threads:
            thread.join(2)
        self.sock.close()
