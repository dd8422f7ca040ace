"""RED metrics of the HTTP requests, recorded from the request middleware's own timing.

The request middleware times each request once and hands a
:class:`~flask_observe.hooks.RequestRecord` to the request hooks;
:class:`HttpMetrics` turns it into three metrics:

- ``http_requests_total{method, route, status}`` (counter);
- ``http_request_duration_seconds{method, route}`` (histogram, trace-ID exemplars);
- ``http_requests_in_progress`` (gauge).

Labels are bounded whatever clients send: ``route`` is the URL rule (``/users/<int:id>``),
never the raw path, and :data:`UNMATCHED` for every request no route matched; a method
outside the standard set becomes ``OTHER``; a status outside 100-599 becomes ``"0"``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..hooks import RequestRecord

__all__ = ["METHODS", "UNMATCHED", "HttpMetrics"]

#: The ``route`` label of requests that matched no URL rule (404s, 405s, scans).
UNMATCHED = "<unmatched>"
#: Methods kept as their own label value; any other becomes ``OTHER``.
METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
_STATUS = {code: str(code) for code in range(100, 600)}


class HttpMetrics:
    """Records finished requests into the app's registry.

    :param registry: the app's registry.
    :param buckets: upper bounds of the duration histogram.
    :param excluded: the shared exclusion predicate on the request path.
    :param multiprocess: prometheus_client runs in multiprocess mode.
    :param exemplars: record the request's trace ID (``RequestRecord.trace_id``) as an
        exemplar on the duration histogram.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        buckets: Sequence[float],
        excluded: Callable[[str], bool] | None = None,
        exemplars: bool = False,
        multiprocess: bool = False,
    ) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from receiving a request to sending the last byte of its response.",
            ("method", "route"),
            buckets=tuple(buckets),
            registry=registry,
        )
        self.in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being served right now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._excluded = excluded
        self._exemplars = exemplars
        # (method, route, status) -> (counter child, histogram child): label lookups cost more
        # than the increments themselves. Bounded by the labels being bounded.
        self._children: dict[tuple[str, str | None, int], tuple[Any, Any]] = {}
        if multiprocess:
            self._inc_progress: Callable[[], object] = self.in_progress.inc
            self._dec_progress: Callable[[], object] = self.in_progress.dec
        else:
            # One process: two lock-free C counters, read when scraped, cost less per request
            # than two locked gauge updates. (Multiprocess files need the updates.)
            started, finished = itertools.count(1), itertools.count(1)
            last = {"started": 0, "finished": 0}

            def inc() -> object:
                last["started"] = next(started)
                return None

            def dec() -> object:
                last["finished"] = next(finished)
                return None

            self._inc_progress, self._dec_progress = inc, dec
            # Under concurrency a slower thread may store an older count: the value can lag by
            # a request or two, never below 0; when idle it is exact (0).
            self.in_progress.set_function(lambda: max(0, last["started"] - last["finished"]))

    def _is_excluded(self, record: RequestRecord) -> bool:
        excluded = record.excluded
        if excluded is None:
            predicate = self._excluded
            excluded = predicate is not None and predicate(record.environ.get("PATH_INFO", ""))
            record.excluded = excluded
        return excluded

    def on_start(self, record: RequestRecord) -> None:
        """Count the request as in progress (unless its path is excluded)."""
        if not self._is_excluded(record):
            self._inc_progress()

    def on_finish(self, record: RequestRecord) -> None:
        """Count and time a finished request."""
        if self._is_excluded(record):
            return
        self._dec_progress()
        method = record.environ.get("REQUEST_METHOD", "")
        key = (method, record.route, record.status)
        children = self._children.get(key)
        if children is None:
            children = self._new_children(key)
        counter, histogram = children
        counter.inc()
        trace_id = record.trace_id
        # What the server controls: a slow upload or download is the client's time.
        seconds = record.duration - record.client_wait
        if trace_id is not None and self._exemplars:
            histogram.observe(seconds, {"trace_id": trace_id})
        else:
            histogram.observe(seconds)

    def _new_children(self, key: tuple[str, str | None, int]) -> tuple[Any, Any]:
        method, route, status = key
        method_label = method if method in METHODS else "OTHER"
        route_label = route if route is not None else UNMATCHED
        status_label = _STATUS.get(status, "0")
        children = (
            self.requests.labels(method_label, route_label, status_label),
            self.duration.labels(method_label, route_label),
        )
        if method in METHODS:
            # Invented methods are not cached under their own name (unbounded keys).
            self._children[key] = children
        return children
