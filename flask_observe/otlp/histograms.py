"""The histograms of the OTLP metrics pipeline (:mod:`.metrics`), filled without the SDK's
instruments: a request appends its value to its cell's queue (one C call, no lock), and the
queue is folded into the buckets, count, sum, minimum and maximum (sorted once in C, one
bisection per bound) when it holds :data:`FOLD_AT` values and when the reader collects, as
the SDK's data points then. Also the active-requests counts (:class:`ActiveRequests`).
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import AggregationTemporality, HistogramDataPoint, Metric
from opentelemetry.sdk.metrics.export import Histogram as HistogramData

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation

__all__ = ["FOLD_AT", "ActiveRequests", "Histogram_"]


#: Values a histogram cell queues before the request that adds one folds them into its
#: counts (the reader folds the rest when it collects): this many floats wait a cell (more
#: only while the reader is folding it), and their fold (C loops: sorted once, one
#: bisection per bound) costs a request once in that many requests.
FOLD_AT = 256

_popleft = collections.deque.popleft


class _Cell:
    """One histogram data point being filled: a bucket count per boundary (plus one), and
    the values recorded since the last fold (:meth:`fold`)."""

    __slots__ = (
        "attributes",
        "count",
        "counts",
        "exemplar",
        "lock",
        "max",
        "min",
        "pending",
        "start",
        "sum",
    )

    def __init__(self, attributes: Mapping[str, Any], buckets: int, start: int) -> None:
        self.attributes = dict(attributes)
        #: Held by whoever folds or reads the counts (never by a request that records).
        self.lock = threading.Lock()
        self.counts = [0] * (buckets + 1)
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.start = start
        #: Values recorded and not yet folded: ``append`` and ``popleft`` are atomic, so
        #: recording takes no lock.
        self.pending: collections.deque[float] = collections.deque()
        #: (value, time ns, trace id, span id) of the latest sampled request, or None.
        self.exemplar: tuple[float, int, int, int] | None = None

    def fold(self, bounds: Sequence[float]) -> None:
        """Move the queued values into the counts; the caller holds :attr:`lock`. Values
        recorded meanwhile stay queued for the next fold."""
        pending = self.pending
        taken = len(pending)
        if not taken:
            return
        values = sorted(map(_popleft, itertools.repeat(pending, taken)))
        counts = self.counts
        below = 0  # values at or under the previous bound (bucket i: bound i-1 < v <= bound i)
        for index, bound in enumerate(bounds):
            upto = bisect.bisect_right(values, bound, below)
            counts[index] += upto - below
            below = upto
        counts[-1] += taken - below
        self.count += taken
        self.sum += math.fsum(values)
        if values[0] < self.min:
            self.min = values[0]
        if values[-1] > self.max:
            self.max = values[-1]

    def fold_unless_folding(self, bounds: Sequence[float]) -> None:
        """:meth:`fold`, unless another thread (the reader) is folding this cell now: a
        recording thread never waits for the lock."""
        if self.lock.acquire(False):
            try:
                self.fold(bounds)
            finally:
                self.lock.release()

    def recorded(self) -> int:
        """How many values the cell holds, folded or not."""
        return self.count + len(self.pending)


class Histogram_:
    """One histogram metric: a cell per attribute set (bounded by the callers' keys)."""

    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> None:
        self.name, self.unit, self.description = name, unit, description
        self.bounds = tuple(float(b) for b in bounds)
        self.cells: dict[Hashable, _Cell] = {}
        self._lock = threading.Lock()

    def cell(self, key: Hashable, attributes: Callable[[], Mapping[str, Any]]) -> _Cell:
        found = self.cells.get(key)
        if found is None:
            with self._lock:
                found = self.cells.get(key)
                if found is None:
                    found = _Cell(attributes(), len(self.bounds), time.time_ns())
                    self.cells[key] = found
        return found

    def record(self, cell: _Cell, value: float, exemplar: Any = None) -> None:
        pending = cell.pending
        pending.append(value)
        if exemplar is not None:
            cell.exemplar = (value, time.time_ns(), exemplar.trace_id, exemplar.span_id)
        if len(pending) >= FOLD_AT:
            cell.fold_unless_folding(self.bounds)

    def collect(self, now: int, delta: bool) -> Metric | None:
        points = []
        bounds = self.bounds
        for cell in list(self.cells.values()):
            with cell.lock:
                cell.fold(bounds)
                if not cell.count:
                    if delta:
                        cell.start = now
                    continue
                counts, count, total = list(cell.counts), cell.count, cell.sum
                low, high, exemplar, start = cell.min, cell.max, cell.exemplar, cell.start
                if delta:
                    cell.counts = [0] * len(cell.counts)
                    cell.count, cell.sum = 0, 0.0
                    cell.min, cell.max = float("inf"), float("-inf")
                    cell.exemplar, cell.start = None, now
            points.append(
                HistogramDataPoint(
                    attributes=cell.attributes,
                    start_time_unix_nano=start,
                    time_unix_nano=now,
                    count=count,
                    sum=total,
                    bucket_counts=counts,
                    explicit_bounds=bounds,
                    min=low,
                    max=high,
                    exemplars=_exemplars(exemplar),
                )
            )
        if not points:
            return None
        temporality = AggregationTemporality.DELTA if delta else AggregationTemporality.CUMULATIVE
        return Metric(self.name, self.description, self.unit, HistogramData(points, temporality))

    def reset(self) -> None:
        self.cells = {}
        self._lock = threading.Lock()


def _exemplars(exemplar: tuple[float, int, int, int] | None) -> list[Any]:
    if exemplar is None:
        return []
    value, at, trace_id, span_id = exemplar
    return [Exemplar({}, value, at, span_id, trace_id)]


class ActiveRequests:
    """``http.server.active_requests`` per (method, scheme): two lock-free counts each (C
    ``itertools.count``), read when collected."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], tuple[Any, Any, list[int]]] = {}
        self._lock = threading.Lock()

    def of(self, key: tuple[str, str]) -> tuple[Any, Any, list[int]]:
        found = self.counts.get(key)
        if found is None:
            with self._lock:
                found = self.counts.setdefault(
                    key, (itertools.count(1), itertools.count(1), [0, 0])
                )
        return found

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        for (method, scheme), (_, _, last) in list(self.counts.items()):
            yield Observation(
                max(0, last[0] - last[1]),
                {"http.request.method": method, "url.scheme": scheme},
            )
