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
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

try:  # where the import of this module does not need prometheus_client (UNMATCHED)
    from prometheus_client.samples import Exemplar
except ImportError:  # pragma: no cover - the metrics feature needs it anyway
    Exemplar = None  # type: ignore[assignment,misc]

from .multiprocess import QUANTUM, SCALE

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
        # (method, route, status) -> what records one request in those labels (see
        # _recorders): label lookups cost more than the increments themselves. Bounded by the
        # labels being bounded.
        self._children: dict[tuple[str, str | None, int], _Children] = {}
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
        excluded = record.excluded  # _is_excluded(), inlined: the first check of a request
        if excluded is None:
            predicate = self._excluded
            excluded = predicate is not None and predicate(record.environ.get("PATH_INFO", ""))
            record.excluded = excluded
        if not excluded:
            self._inc_progress()

    def on_finish(self, record: RequestRecord) -> None:
        """Count and time a finished request."""
        excluded = record.excluded  # on_start checked it
        if excluded if excluded is not None else self._is_excluded(record):
            return
        self._dec_progress()
        method = record.environ.get("REQUEST_METHOD", "")
        key = (method, record.route, record.status)
        children = self._children.get(key)
        if children is None:
            children = self._new_children(key)
        count, total, bounds, buckets, histogram = children
        # Where prometheus_client's children have the known shape, what Counter.inc() and
        # Histogram.observe() do to them, less their checks that the child is one (it is)
        # and that the exemplar is valid (a trace ID of 32 hex digits always is).
        count(1)
        trace_id = record.trace_id
        # What the server controls: a slow upload or download is the client's time.
        seconds = record.duration - record.client_wait
        if trace_id is not None and self._exemplars:
            if bounds is None or len(trace_id) != 32:
                histogram.observe(int(seconds * SCALE) * QUANTUM, {"trace_id": trace_id})
                return
            total(seconds)
            bucket = buckets[bisect_left(bounds, seconds)]
            bucket.inc(1)
            bucket.set_exemplar(Exemplar({"trace_id": trace_id}, seconds, time.time()))
        elif bounds is None:
            histogram.observe(int(seconds * SCALE) * QUANTUM)
        else:
            total(seconds)
            buckets[bisect_left(bounds, seconds)].inc(1)

    def _new_children(self, key: tuple[str, str | None, int]) -> _Children:
        method, route, status = key
        method_label = method if method in METHODS else "OTHER"
        route_label = route if route is not None else UNMATCHED
        status_label = _STATUS.get(status, "0")
        children = _recorders(
            self.requests.labels(method_label, route_label, status_label),
            self.duration.labels(method_label, route_label),
        )
        if method in METHODS:
            # Invented methods are not cached under their own name (unbounded keys).
            self._children[key] = children
        return children


#: A request's recorders in one set of labels: the counter's increment, then the
#: :data:`HistogramCells` of its duration histogram.
_Children = tuple[Callable[..., object], Any, Any, Any, Any]

#: What :func:`observe` writes into one histogram child: its sum's increment, its upper
#: bounds, its bucket values, and the child itself; the first three are ``None`` where
#: prometheus_client's public ``observe()`` is used instead.
HistogramCells = tuple[Any, Any, Any, Any]


def _recorders(counter: Any, histogram: Any) -> _Children:
    """The value behind a counter child and the cells of a histogram child, where they have
    the shape prometheus_client 0.20-0.26 gives them (``_value``: see :func:`histogram_cells`),
    else their public methods."""
    cells = histogram_cells(histogram)
    value = getattr(counter, "_value", None)
    if cells[1] is not None and callable(getattr(value, "inc", None)):
        return (value.inc, *cells)  # type: ignore[union-attr]
    return counter.inc, None, None, None, histogram


def histogram_cells(histogram: Any) -> HistogramCells:
    """The values behind a histogram child (``_sum``, ``_upper_bounds``, ``_buckets``:
    tests/test_prometheus_client_private.py) where they have the shape prometheus_client
    0.20-0.26 gives them, else only the child (its public ``observe()``)."""
    total = getattr(histogram, "_sum", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    if (
        Exemplar is not None
        and callable(getattr(total, "inc", None))
        and isinstance(bounds, list)
        and isinstance(buckets, list)
        and len(bounds) == len(buckets) > 0
        and bounds[-1] == float("inf")
        and bounds == sorted(bounds)
        and all(callable(getattr(b, "inc", None)) for b in buckets)
        and all(callable(getattr(b, "set_exemplar", None)) for b in buckets)
    ):
        add: Any = total.inc  # type: ignore[union-attr]
        if getattr(total, "_multiprocess", False):
            add = _in_quanta(add)
        return add, bounds, buckets, histogram
    return None, None, None, histogram


def _in_quanta(inc: Callable[[float], None]) -> Callable[[float], None]:
    """``inc`` of a sum another process's file is added to at each scrape (prometheus_client's
    multiprocess mode): the amount in whole :data:`~.multiprocess.QUANTUM`
    (:func:`~.multiprocess.exact`), so the scrape's total never steps down. In one process
    the sum is the value itself: nothing to do there, and nothing is done."""

    def add(amount: float) -> None:
        inc(int(amount * SCALE) * QUANTUM)

    return add


def observe(cells: HistogramCells, seconds: float, trace_id: str | None) -> None:
    """What ``Histogram.observe(seconds, {"trace_id": trace_id})`` does to a child (no
    exemplar when ``trace_id`` is ``None``), less its checks that the child is one and that
    the exemplar is valid (a trace ID of 32 hex digits always is). In multiprocess mode the
    sum adds ``seconds`` in whole :data:`~.multiprocess.QUANTUM` (:func:`_in_quanta`); the
    bucket and the exemplar take it as it is (through the public ``observe()``, all three
    take it rounded down to whole quanta)."""
    total, bounds, buckets, histogram = cells
    if bounds is None or (trace_id is not None and len(trace_id) != 32):
        exemplar = {"trace_id": trace_id} if trace_id is not None else None
        histogram.observe(int(seconds * SCALE) * QUANTUM, exemplar)
        return
    total(seconds)
    bucket = buckets[bisect_left(bounds, seconds)]
    bucket.inc(1)
    if trace_id is not None:
        bucket.set_exemplar(Exemplar({"trace_id": trace_id}, seconds, time.time()))
