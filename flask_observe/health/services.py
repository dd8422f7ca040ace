"""Built-in checks of services: Celery workers and their broker, and an HTTP dependency."""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .checks import CheckFailed, HealthCheck, Observation, Status
from .datastores import _first_line, _ms

__all__ = ["CeleryCheck", "DependencyCheck", "HttpCheck"]

#: Seconds between polls for ping replies (Redis broker).
_POLL = 0.1

#: Bytes of an HTTP dependency's body read (and dropped) before the connection is closed.
_MAX_BODY = 64 * 1024


@dataclass
class CeleryCheck(HealthCheck):
    """The broker accepts a connection, and at least ``min_workers`` workers answer a ping.

    Both within the check's timeout: the broker connection has its connect and socket
    timeouts set and no retries; the ping waits for the rest of the deadline at most, and
    returns as soon as enough workers have answered.

    :param celery: the Celery app; ``None``: ``current_app.extensions["celery"]``.
    :param min_workers: how many workers must answer.
    :param workers: ping only these worker names (``celery@host``); empty: broadcast.
    """

    requires: ClassVar[tuple[tuple[str, str], ...]] = (("celery", "celery"),)

    celery: Any = field(default=None, repr=False)
    min_workers: int = 1
    workers: tuple[str, ...] = ()

    def _app(self) -> Any:
        if self.celery is not None:
            return self.celery
        from flask import current_app

        app = current_app.extensions.get("celery")
        if app is None:
            raise CheckFailed("no Celery app (pass celery= or set app.extensions['celery'])")
        return app

    def run(self) -> list[Observation]:
        timeout = self.timeout or 2.0
        app = self._app()
        started = time.perf_counter()
        conn = app.connection_for_write(
            connect_timeout=timeout,
            transport_options={
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "max_retries": 0,
                # Redis: replies are awaited with BRPOP, 1 s per poll by default, which would
                # round the ping's wait up to whole seconds.
                "polling_interval": _POLL,
            },
        )
        try:
            try:
                conn.ensure_connection(max_retries=0, timeout=timeout)
            except Exception as exc:
                raise CheckFailed(f"broker unreachable: {_describe(exc)}") from None
            broker_ms = _ms(started)
            # Leave room for the last poll and the reply handling, so the check can say what
            # happened before the runner's deadline cuts it short.
            remaining = timeout - (time.perf_counter() - started) - 2 * _POLL
            if remaining <= 0:
                raise CheckFailed("broker answered too slowly to ping the workers")
            try:
                replies = app.control.ping(
                    destination=list(self.workers) or None,
                    timeout=remaining,
                    limit=None if self.workers else self.min_workers,
                    connection=conn,
                )
            except Exception as exc:
                raise CheckFailed(f"ping failed: {_describe(exc)}") from None
        finally:
            conn.release()
        answered = len(replies or ())
        needed = len(self.workers) if self.workers else self.min_workers
        status = Status.PASS if answered >= needed else Status.FAIL
        output = None
        if status is Status.FAIL:
            output = (
                f"{answered} worker(s) answered the ping within {remaining:.2f}s, {needed} needed"
            )
        return [
            Observation("responseTime", _ms(started), "ms", status, output=output),
            Observation("workers", answered, "workers", status, output=output),
            Observation("broker", broker_ms, "ms", component_type="component"),
        ]

    def secrets(self) -> Iterable[str]:
        try:
            app = self._app()
            url = app.connection_for_write().as_uri(include_password=True)
        except Exception:
            return ()
        password = urlsplit(url).password
        return [url, password] if password else [url]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_first_line(exc)}"


@dataclass
class HttpCheck(HealthCheck):
    """A request to an HTTP dependency: the status must be expected, latency is reported.

    Plain ``http.client`` (no redirects followed, no retries, the socket timeout set); the
    body is read up to 64 KiB and dropped.

    :param url: ``http://`` or ``https://``; never shown (it may hold a token).
    :param expected_status: accepted status codes; empty: 200-399.
    :param headers: extra request headers (an API key, say); never shown.
    :param warn_latency_ms: warn above this latency.
    :param verify: verify the TLS certificate.
    """

    url: str = field(default="", repr=False)
    method: str = "GET"
    expected_status: tuple[int, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    warn_latency_ms: float | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"HttpCheck {self.name!r}: url must be an http(s) URL")

    def run(self) -> Observation:
        timeout = self.timeout or 2.0
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            context = ssl.create_default_context()
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(host, parts.port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": "flask_observe-health", "Connection": "close", **self.headers}
        started = time.perf_counter()
        try:
            conn.request(self.method, target, headers=headers)
            response = conn.getresponse()
            response.read(_MAX_BODY)
        except (OSError, http.client.HTTPException) as exc:
            raise CheckFailed(_describe(exc)) from None
        finally:
            conn.close()
        latency = _ms(started)
        accepted = (
            response.status in self.expected_status
            if self.expected_status
            else 200 <= response.status < 400
        )
        extra = {"httpStatus": response.status}
        if not accepted:
            return Observation(
                "responseTime",
                latency,
                "ms",
                Status.FAIL,
                output=f"answered HTTP {response.status}",
                extra=extra,
            )
        if self.warn_latency_ms is not None and latency > self.warn_latency_ms:
            return Observation(
                "responseTime",
                latency,
                "ms",
                Status.WARN,
                output=f"slow: {latency:.0f} ms (warn above {self.warn_latency_ms:g} ms)",
                extra=extra,
            )
        return Observation("responseTime", latency, "ms", extra=extra)

    def secrets(self) -> Iterable[str]:
        out = [self.url, *self.headers.values()]
        parts = urlsplit(self.url)
        if parts.password:
            out.append(parts.password)
        if parts.query:
            out.append(parts.query)
        return out


@dataclass
class DependencyCheck(HealthCheck):
    """A dependency's health read from the app's own recent calls to it — no call is made.

    The outbound metrics keep the last five minutes of calls to each host declared in
    ``OBSERVE_METRICS_OUTBOUND_HOSTS``: this check warns (or fails, when ``critical``) when
    more than ``max_error_ratio`` of them failed (timeouts, connection and TLS errors, 5xx;
    a 4xx is the caller's mistake) or more than ``max_throttled_ratio`` were throttled (429).
    Fewer than ``min_calls`` calls: too few to judge, it passes.

    :param host: the host pattern as declared (``api.example.com``, ``*.example.com``).
    """

    host: str = ""
    window_seconds: float = 300.0
    max_error_ratio: float = 0.2
    max_throttled_ratio: float = 0.1
    min_calls: int = 10
    critical: bool = False
    cache_ttl: float | None = 0.0

    component_type: ClassVar[str] = "component"
    inline: ClassVar[bool] = True  # reads counters in memory

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.host:
            raise ValueError(f"health check {self.name!r}: host= names a declared host")

    def run(self) -> list[Observation]:
        from ..metrics.outbound import OutboundMetrics
        from ..state import state_or_none

        state = state_or_none()
        outbound = state.get(OutboundMetrics) if state is not None else None
        if outbound is None:
            raise CheckFailed("outbound metrics are off (OBSERVE_METRICS_OUTBOUND)")
        if self.host not in outbound.hosts.patterns:
            raise CheckFailed(f"{self.host!r} is not in OBSERVE_METRICS_OUTBOUND_HOSTS")
        calls, failed, throttled = outbound.window(self.host).totals(self.window_seconds)
        error_ratio = failed / calls if calls else 0.0
        throttled_ratio = throttled / calls if calls else 0.0
        bad = Status.FAIL if self.critical else Status.WARN
        problems = []
        if calls >= self.min_calls and error_ratio > self.max_error_ratio:
            problems.append(f"{error_ratio:.0%} of {calls} calls failed")
        if calls >= self.min_calls and throttled_ratio > self.max_throttled_ratio:
            problems.append(f"{throttled_ratio:.0%} of {calls} calls throttled (429)")
        status = bad if problems else Status.PASS
        output = "; ".join(problems) or None
        window = {"calls": calls, "windowS": self.window_seconds}
        return [
            Observation("errorRatio", round(error_ratio, 4), "ratio", status, output, extra=window),
            Observation("throttledRatio", round(throttled_ratio, 4), "ratio", status, None),
        ]
