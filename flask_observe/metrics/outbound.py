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
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._clock import SYSTEM, Clock
from ..hooks import OutboundCall
from ..hosts import HostAllowlist
from .http import HistogramCells, histogram_cells, observe

if TYPE_CHECKING:
    from . import Metrics

__all__ = ["OTHER", "HostWindow", "OutboundMetrics"]

#: The ``host`` label of every host the app did not declare.
OTHER = "other"
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"))
#: Error types that count against a dependency's health (a 4xx is the caller's mistake).
_DEPENDENCY_FAILURES = frozenset(("timeout", "connection", "tls", "5xx", "other"))
#: Buckets of outbound call durations (seconds): third-party APIs are slower than our views.
OUTBOUND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds of calls a host's window keeps, in slices of this many seconds.
WINDOW_SECONDS = 300.0
_SLICE = 10.0
#: Slots of a host's ring: the window's slices and the one being filled.
_SLOTS = int(WINDOW_SECONDS // _SLICE) + 1


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
        return float(value)
    except ValueError:
        pass
    try:
        # RateLimit-Remaining can list several policies ("10, 100;w=60"): the first counts.
        return float(value.split(",")[0].split(";")[0].strip())
    except ValueError:
        return None


#: The response headers :func:`rate_limit` reads, lower-cased.
RATE_LIMIT_HEADERS = frozenset(
    (
        "ratelimit-remaining",
        "x-ratelimit-remaining",
        "ratelimit-reset",
        "x-ratelimit-reset",
        "retry-after",
    )
)


def rate_limit(headers: Any, now: float) -> tuple[float | None, float | None]:
    """(requests remaining, seconds until the limit resets) from a response's headers:
    the IETF ``RateLimit-*`` fields, the common ``X-RateLimit-*`` ones (their reset is often a
    Unix time), or ``Retry-After`` (seconds or an HTTP date)."""
    remaining, reset, _ = _rate_limit(_rate_limit_fields(headers), now)
    return remaining, reset


def _rate_limit_fields(headers: Any) -> dict[str, str]:
    """The rate-limit fields of ``headers`` (any mapping), by lower-cased name; read straight
    from the store of ``requests``' case-insensitive headers (one set intersection when a
    response has none: most have none)."""
    store = getattr(headers, "_store", None)
    if isinstance(store, dict):
        # requests.structures.CaseInsensitiveDict: {lower-cased name: (name, value)}.
        return {name: store[name][1] for name in store.keys() & RATE_LIMIT_HEADERS}
    return {
        name.lower(): value for name, value in headers.items() if name.lower() in RATE_LIMIT_HEADERS
    }


def _rate_limit(fields: dict[str, str], now: float) -> tuple[float | None, float | None, bool]:
    """:func:`rate_limit` of fields by lower-cased name, and whether the figures depend on
    ``now`` (a reset given as a Unix time or a date)."""
    get = fields.get
    timed = False
    remaining = _number(get("ratelimit-remaining") or get("x-ratelimit-remaining"))
    reset = _number(get("ratelimit-reset") or get("x-ratelimit-reset"))
    if reset is not None and reset > 1e9:  # a Unix time, not a delay
        reset = max(0.0, reset - now)
        timed = True
    retry_after = get("retry-after")
    if retry_after is not None:
        after = _number(retry_after)
        if after is None:
            try:
                when = email.utils.parsedate_to_datetime(retry_after).timestamp()
                after = max(0.0, when - now)
                timed = True
            except (TypeError, ValueError):
                after = None
        if after is not None:
            reset = after if reset is None else max(reset, after)
            if remaining is None:
                remaining = 0.0
    return remaining, reset, timed


class HostWindow:
    """The calls of one host over the last :data:`WINDOW_SECONDS`: counts per slice of
    :data:`_SLICE` seconds, in a ring indexed by the slice's number."""

    __slots__ = ("_clock", "_current", "_lock", "_slices", "_tick", "_ticks")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        #: Slice number (monotonic seconds // _SLICE) of each ring slot; -1: never used.
        self._ticks = [-1.0] * _SLOTS
        #: ``[calls, errors, throttled]`` of each slot.
        self._slices = [[0, 0, 0] for _ in range(_SLOTS)]
        #: The slice being filled, and its number.
        self._current = self._slices[0]
        self._tick = -1.0
        self._lock = threading.Lock()

    def add(self, failed: bool, throttled: bool) -> None:
        tick = self._clock.monotonic() // _SLICE
        with self._lock:
            counts = self._current
            if tick != self._tick:
                slot = int(tick) % _SLOTS
                if self._ticks[slot] != tick:
                    if tick < self._ticks[slot]:
                        return  # older than the ring holds: outside every span asked
                    self._ticks[slot] = tick
                    self._slices[slot] = [0, 0, 0]
                counts = self._slices[slot]
                # A call that read the clock before another one began the next slice (and
                # took the lock first) counts in its own slice, and leaves the next one be.
                if tick > self._tick:
                    self._tick, self._current = tick, counts
            counts[0] += 1
            if failed:
                counts[1] += 1
            if throttled:
                counts[2] += 1

    def totals(self, seconds: float = WINDOW_SECONDS) -> tuple[int, int, int]:
        """(calls, failed, throttled) of the last ``seconds`` (at most the window)."""
        since = self._clock.monotonic() - min(seconds, WINDOW_SECONDS)
        calls = failed = throttled = 0
        with self._lock:
            # A slot overwritten 31 slices ago or more ends before ``since``: never counted.
            for tick, counts in zip(self._ticks, self._slices, strict=True):
                if tick >= 0 and (tick + 1) * _SLICE > since:
                    calls += counts[0]
                    failed += counts[1]
                    throttled += counts[2]
        return calls, failed, throttled


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
        self._timeless = False
        # (host, method, status class) -> the histogram child's cells: a label lookup costs
        # more than the observation. Bounded as the labels are (declared hosts, 8 methods, 6
        # classes): a method outside the standard ones is not cached under its own name.
        self._children: dict[tuple[str, str, str], HistogramCells] = {}
        # (scheme, host:port, method, status) -> what a call answered so records, all but its
        # duration: its declared host's label, its cells, counters and window.
        self._entries: dict[tuple[str, str, str, int], _Entry] = {}
        #: host -> the setters of its (remaining, reset) gauge children.
        self._limits: dict[str, tuple[Callable[[float], None], Callable[[float], None]]] = {}
        #: host -> the rate-limit fields last set, where setting them again would write the
        #: same values (they do not depend on the time, and the gauges keep no timestamp).
        self._last_limits: dict[str, dict[str, str]] = {}
        self._limits_lock = threading.Lock()

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
        parts = urlsplit(call.url)  # cached by urllib: the host label's lookup costs no parse
        status = call.status
        key = (parts.scheme, parts.netloc, call.method, status)
        # Only calls answered without an error are cached (one with both is not served theirs).
        entry = (
            self._entries.get(key)  # type: ignore[arg-type]
            if status is not None and call.error is None
            else None
        )
        if entry is None:
            entry = self._entry(key, call)
        host, cells, errors, window, failed, throttled = entry
        observe(cells, call.duration, self._trace_lookup() if self._trace_lookup else None)
        if errors is not None:
            errors.inc()
        if call.retries:
            self.retries.labels(host).inc(call.retries)
        headers = call.headers
        store = getattr(headers, "_store", None)
        if isinstance(store, dict):  # _rate_limit_fields(), inlined for requests' headers
            names = store.keys() & RATE_LIMIT_HEADERS
            fields = {name: store[name][1] for name in names} if names else None
        else:
            fields = _rate_limit_fields(headers)
        if fields and fields != self._last_limits.get(host):
            self._set_limits(host, fields)
        if window is not None:
            window.add(failed, throttled)

    def _entry(self, key: tuple[str, str, str, int | None], call: OutboundCall) -> _Entry:
        """What a call to this host with this answer records (cached for the answers of
        standard methods; at most :data:`_ENTRIES` of them, then the cache starts over)."""
        host = self.hosts.label(call.url) or OTHER
        method, status = call.method, call.status
        known = method in _METHODS
        status_class = (
            f"{status // 100}xx" if status is not None and call.error is None else "error"
        )
        kind = error_type(call)
        entry = (
            host,
            self._cells((host, method if known else "OTHER", status_class)),
            self.errors.labels(host, kind) if kind is not None else None,
            self.window(host) if host != OTHER else None,
            # A 4xx is the caller's mistake (a missing account), not the dependency failing.
            kind in _DEPENDENCY_FAILURES,
            kind == "429",
        )
        if known and call.error is None and status is not None and 100 <= status <= 599:
            if len(self._entries) >= _ENTRIES:
                self._entries.clear()
            self._entries[key] = entry  # type: ignore[index]
        return entry

    def _cells(self, key: tuple[str, str, str]) -> HistogramCells:
        cells = self._children.get(key)
        if cells is None:
            cells = self._children[key] = histogram_cells(self.duration.labels(*key))
        return cells

    def _set_limits(self, host: str, fields: dict[str, str]) -> None:
        """Set the host's rate-limit gauges from ``fields`` (when they give a figure), and
        remember ``fields`` when the same fields would set the same values again."""
        remaining, reset, timed = _rate_limit(fields, self._clock.time())
        if remaining is None and reset is None:
            return
        with self._limits_lock:  # the gauges and the fields they show, changed together
            setters = self._limits.get(host)
            if setters is None:
                remaining_gauge, reset_gauge = self.remaining.labels(host), self.reset.labels(host)
                setters = self._limits[host] = (_setter(remaining_gauge), _setter(reset_gauge))
                self._timeless = _keeps_no_timestamp(remaining_gauge)
            if remaining is not None:
                setters[0](remaining)
            if reset is not None:
                setters[1](reset)
            if not timed and self._timeless:
                self._last_limits[host] = fields
            else:  # the next answer sets its figures whatever its fields
                self._last_limits.pop(host, None)


#: A call's recorders by its host and answer: the declared host (its label), the histogram
#: cells of its labels, the error counter's child (``None``: not an error), the host's window
#: (``None``: an undeclared host), and whether the call failed the dependency and was
#: throttled.
_Entry = tuple[str, HistogramCells, Any, "HostWindow | None", bool, bool]
#: At most this many (host, answer) entries are kept: a scraper calls thousands of hosts.
_ENTRIES = 4096


def _keeps_no_timestamp(gauge: Any) -> bool:
    from prometheus_client.values import MutexValue

    return type(getattr(gauge, "_value", None)) is MutexValue


def _setter(gauge: Any) -> Callable[[float], None]:
    """What ``gauge.set`` does, less its checks, where the child keeps its value in
    prometheus_client's in-process ``MutexValue`` (which has no timestamp to keep); a gauge of
    a multiprocess registry keeps ``gauge.set`` (``mostrecent`` stamps each value)."""
    if _keeps_no_timestamp(gauge):
        return gauge._value.set  # type: ignore[no-any-return]
    return gauge.set  # type: ignore[no-any-return]
