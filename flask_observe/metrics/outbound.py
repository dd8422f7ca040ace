"""Metrics of the app's outgoing HTTP calls (``requests``): what a scraper's life depends on.

- ``http_client_request_duration_seconds{host, method, status_class}`` (histogram; its
  ``_count`` is the call count; trace-ID exemplars): ``status_class`` is ``2xx`` … ``5xx``, or
  ``error`` when there was no response;
- ``http_client_errors_total{host, error_type}``: ``timeout``, ``connection``, ``tls``,
  ``429``, ``4xx``, ``5xx``, ``other``;
- ``http_client_retries_total{host}``: retries urllib3 made inside a call (``Retry``);
- ``http_client_rate_limit_remaining{host}`` and ``http_client_rate_limit_reset_seconds{host}``
  (gauges): from the last response's ``RateLimit-*`` / ``X-RateLimit-*`` / ``Retry-After``.

``host`` is the pattern of ``OBSERVE_METRICS_OUTBOUND_HOSTS`` the call's host matched (as
written: ``*.instagram.com`` counts every subdomain as one), and ``other`` for every host the
app did not declare: a scraper following links to thousands of sites makes one series, not
thousands. The last five minutes of each declared host are also kept in memory, for
:class:`~flask_observe.health.DependencyCheck` (a dependency's health from its calls,
without making one).
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._clock import SYSTEM, Clock
from ..hooks import OutboundCall
from ..hosts import HostAllowlist

if TYPE_CHECKING:
    from . import Metrics

__all__ = ["OTHER", "HostWindow", "OutboundMetrics"]

#: The ``host`` label of every host the app did not declare.
OTHER = "other"
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"))
#: Buckets of outbound call durations (seconds): third-party APIs are slower than our views.
OUTBOUND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds of calls a host's window keeps, in slices of this many seconds.
WINDOW_SECONDS = 300.0
_SLICE = 10.0


def error_type(call: OutboundCall) -> str | None:
    """``timeout``, ``connection``, ``tls``, ``429``, ``4xx``, ``5xx``, ``other``, or ``None``
    for a call that went well (a 1xx-3xx answer)."""
    error = call.error
    if error is None:
        status = call.status or 0
        if status == 429:
            return "429"
        if 400 <= status < 500:
            return "4xx"
        if status >= 500:
            return "5xx"
        return None
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"SSLError", "SSLCertVerificationError"}:
        return "tls"
    if names & {"Timeout", "ReadTimeout", "ConnectTimeout", "TimeoutError"}:
        return "timeout"
    if names & {"ConnectionError", "ProxyError", "NewConnectionError"}:
        return "connection"
    return "other"


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        # RateLimit-Remaining can list several policies ("10, 100;w=60"): the first counts.
        return float(value.split(",")[0].split(";")[0].strip())
    except ValueError:
        return None


def rate_limit(headers: Any, now: float) -> tuple[float | None, float | None]:
    """(requests remaining, seconds until the limit resets) from a response's headers:
    the IETF ``RateLimit-*`` fields, the common ``X-RateLimit-*`` ones (their reset is often a
    Unix time), or ``Retry-After`` (seconds or an HTTP date)."""
    remaining = _number(headers.get("RateLimit-Remaining") or headers.get("X-RateLimit-Remaining"))
    reset = _number(headers.get("RateLimit-Reset") or headers.get("X-RateLimit-Reset"))
    if reset is not None and reset > 1e9:  # a Unix time, not a delay
        reset = max(0.0, reset - now)
    retry_after = headers.get("Retry-After")
    if retry_after is not None:
        after = _number(retry_after)
        if after is None:
            try:
                when = email.utils.parsedate_to_datetime(retry_after).timestamp()
                after = max(0.0, when - now)
            except (TypeError, ValueError):
                after = None
        if after is not None:
            reset = after if reset is None else max(reset, after)
            if remaining is None:
                remaining = 0.0
    return remaining, reset


class HostWindow:
    """The calls of one host over the last :data:`WINDOW_SECONDS`: counts per slice."""

    __slots__ = ("_clock", "_lock", "_slices")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        #: ``[slice start, calls, errors, throttled]``, oldest first.
        self._slices: deque[list[float]] = deque()
        self._lock = threading.Lock()

    def add(self, failed: bool, throttled: bool) -> None:
        now = self._clock.monotonic()
        start = now - now % _SLICE
        with self._lock:
            if not self._slices or self._slices[-1][0] != start:
                self._slices.append([start, 0.0, 0.0, 0.0])
                while self._slices and self._slices[0][0] <= now - WINDOW_SECONDS - _SLICE:
                    self._slices.popleft()
            current = self._slices[-1]
            current[1] += 1
            current[2] += failed
            current[3] += throttled

    def totals(self, seconds: float = WINDOW_SECONDS) -> tuple[int, int, int]:
        """(calls, failed, throttled) of the last ``seconds`` (at most the window)."""
        since = self._clock.monotonic() - min(seconds, WINDOW_SECONDS)
        with self._lock:
            slices = [s for s in self._slices if s[0] + _SLICE > since]
        return (
            int(sum(s[1] for s in slices)),
            int(sum(s[2] for s in slices)),
            int(sum(s[3] for s in slices)),
        )


class OutboundMetrics:
    """Records each outgoing call into the app's registry (an outbound hook).

    :param metrics: the app's metrics.
    :param hosts: the declared hosts (the only ``host`` label values but ``other``).
    :param trace_lookup: the current trace ID (exemplars), or ``None``.
    """

    def __init__(
        self,
        metrics: Metrics,
        hosts: Iterable[str],
        *,
        buckets: Sequence[float] = OUTBOUND_BUCKETS,
        trace_lookup: Callable[[], str | None] | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.hosts = HostAllowlist(hosts)
        self._trace_lookup = trace_lookup
        self._clock = clock
        self.duration = metrics.histogram(
            "http_client_request_duration_seconds",
            "Outgoing HTTP calls: time to the response's headers, by declared host.",
            ["host", "method", "status_class"],
            buckets=buckets,
        )
        self.errors = metrics.counter(
            "http_client_errors_total",
            "Outgoing HTTP calls that failed, by declared host and error type.",
            ["host", "error_type"],
        )
        self.retries = metrics.counter(
            "http_client_retries_total",
            "Retries urllib3 made inside outgoing calls, by declared host.",
            ["host"],
        )
        self.remaining = metrics.gauge(
            "http_client_rate_limit_remaining",
            "Requests left in the current rate-limit window (the host's last answer).",
            ["host"],
            multiprocess_mode="mostrecent",
        )
        self.reset = metrics.gauge(
            "http_client_rate_limit_reset_seconds",
            "Seconds until the host's rate limit resets (its last answer).",
            ["host"],
            multiprocess_mode="mostrecent",
        )
        self._windows: dict[str, HostWindow] = {}
        self._windows_lock = threading.Lock()
        # (host, method, status class) -> histogram child: a label lookup costs more than the
        # observation. Bounded as the labels are (declared hosts, 8 methods, 6 classes).
        self._children: dict[tuple[str, str, str], Any] = {}
        #: host -> (remaining gauge child, reset gauge child).
        self._limits: dict[str, tuple[Any, Any]] = {}

    def host_label(self, url: str) -> str:
        return self.hosts.label(url) or OTHER

    def window(self, host: str) -> HostWindow:
        """The recent calls of the declared host ``host`` (a pattern as declared)."""
        window = self._windows.get(host)
        if window is None:
            with self._windows_lock:
                window = self._windows.setdefault(host, HostWindow(self._clock))
        return window

    def __call__(self, call: OutboundCall) -> None:
        host = self.host_label(call.url)
        method = call.method if call.method in _METHODS else "OTHER"
        status = call.status
        status_class = (
            f"{status // 100}xx" if status is not None and call.error is None else "error"
        )
        trace_id = self._trace_lookup() if self._trace_lookup is not None else None
        key = (host, method, status_class)
        histogram = self._children.get(key)
        if histogram is None:
            histogram = self._children[key] = self.duration.labels(host, method, status_class)
        if trace_id is not None:
            histogram.observe(call.duration, {"trace_id": trace_id})
        else:
            histogram.observe(call.duration)
        kind = error_type(call)
        if kind is not None:
            self.errors.labels(host, kind).inc()
        if call.retries:
            self.retries.labels(host).inc(call.retries)
        if call.headers:
            remaining, reset = rate_limit(call.headers, time.time())
            if remaining is not None or reset is not None:
                gauges = self._limits.get(host)
                if gauges is None:
                    gauges = self._limits[host] = (
                        self.remaining.labels(host),
                        self.reset.labels(host),
                    )
                if remaining is not None:
                    gauges[0].set(remaining)
                if reset is not None:
                    gauges[1].set(reset)
        if host != OTHER:
            # A 4xx is the caller's mistake (a missing account), not the dependency failing.
            failed = kind in ("timeout", "connection", "tls", "5xx", "other")
            self.window(host).add(failed, kind == "429")
