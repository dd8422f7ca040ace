"""The app's own operations, timed and counted in one line: :func:`timed`.

``timed("scrape_account", labels={"platform": "twitter"})`` used as a decorator or a context
manager records, for each run:

- ``scrape_account_duration_seconds{platform, outcome}`` (histogram; trace/correlation-ID
  exemplars);
- ``scrape_account_total{platform, outcome}`` (counter); ``outcome`` is ``success`` or
  ``failure`` (the block raised, or :meth:`Timing.fail` was called);
- ``operation_consecutive_failures{operation}`` (gauge, the largest over live processes):
  failures in a row, back to 0 on a success, what the shipped alert rule
  ``FlaskObserveOperationFailing`` watches; :class:`FailureStreak` feeds it by hand;
- a span named after the operation (tracing on), the exception recorded on it;
- a WARNING line on failure (``operation``, ``duration_seconds``, ``error_type``).

Labels stay bounded: an operation's label names are those of its first use; each operation
keeps at most :data:`MAX_LABEL_SETS` distinct label values, later ones are all ``other``; at
most :data:`MAX_OPERATIONS` operations per app (the rest are not recorded, and said once).
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .._internal import FailureLog
from ..state import state_or_none
from . import MetricNameError, check_name
from .multiprocess import exact

if TYPE_CHECKING:
    from . import Metrics

__all__ = ["FailureStreak", "Operations", "Timing", "timed"]

logger = logging.getLogger("flask_observe.timed")
_internal_logger = logging.getLogger("flask_observe")

F = TypeVar("F", bound=Callable[..., Any])

OTHER = "other"
MAX_OPERATIONS = 100
MAX_LABEL_SETS = 50
#: From a cache hit to a long scrape.
OPERATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_RESERVED = frozenset(("outcome", "operation"))
_EXEMPLAR_BUDGET = 128

Labels = Mapping[str, object]


class _Operation:
    __slots__ = ("count", "duration", "label_names", "label_sets")

    def __init__(self, duration: Any, count: Any, label_names: tuple[str, ...]) -> None:
        self.duration = duration
        self.count = count
        self.label_names = label_names
        self.label_sets: set[tuple[str, ...]] = set()


class Operations:
    """The timed operations of one app (``Observe.handle(Operations, app)``).

    :param metrics: the app's metrics.
    :param tracer: an OpenTelemetry tracer (tracing on), or ``None``.
    :param trace_lookup: the current trace ID (exemplars), or ``None``.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        tracer: Any = None,
        trace_lookup: Callable[[], str | None] | None = None,
        exemplars: bool = True,
        buckets: Sequence[float] = OPERATION_BUCKETS,
        max_operations: int = MAX_OPERATIONS,
        max_label_sets: int = MAX_LABEL_SETS,
    ) -> None:
        self._metrics = metrics
        self.tracer = tracer
        self._trace_lookup = trace_lookup
        self._exemplars = exemplars
        self._buckets = tuple(buckets)
        self._max_operations = max_operations
        self._max_label_sets = max_label_sets
        self._operations: dict[str, _Operation] = {}
        self._streaks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._refused: set[str] = set()
        self.streaks = metrics.gauge(
            "operation_consecutive_failures",
            "Failures in a row of an operation (timed or FailureStreak); 0 after a success.",
            ["operation"],
            multiprocess_mode="livemax",
        )

    def operation(self, name: str, label_names: Sequence[str]) -> _Operation | None:
        """The families of operation ``name`` (made on first use), ``None`` past the bound.

        :raises MetricNameError: ``name`` or a label name breaks the naming rules, or the
            operation was first used with other label names.
        """
        found = self._operations.get(name)
        names = tuple(sorted(label_names))
        if found is None:
            with self._lock:
                found = self._operations.get(name)
                if found is None:
                    if len(self._operations) >= self._max_operations:
                        if name not in self._refused:
                            self._refused.add(name)
                            _internal_logger.warning(
                                "flask_observe: timed(%r) is not recorded: this app already"
                                " times %d operations (labels stay bounded); time fewer, or"
                                " put the varying part in a label",
                                name[:100],
                                self._max_operations,
                            )
                        return None
                    for label in names:
                        if label in _RESERVED:
                            raise MetricNameError(f"timed({name!r}): {label!r} is reserved")
                    check_name(f"{name}_total", "counter", names)
                    duration = self._metrics.histogram(
                        f"{name}_duration_seconds",
                        f"Time the {name} operation took, by outcome.",
                        [*names, "outcome"],
                        buckets=self._buckets,
                    )
                    count = self._metrics.counter(
                        f"{name}_total",
                        f"Runs of the {name} operation, by outcome.",
                        [*names, "outcome"],
                    )
                    found = self._operations[name] = _Operation(duration, count, names)
        if found.label_names != names:
            raise MetricNameError(
                f"timed({name!r}) was first used with labels {list(found.label_names)}; now"
                f" {list(names)}: an operation keeps its label names"
            )
        return found

    def label_values(self, operation: _Operation, labels: Labels) -> tuple[str, ...]:
        values = tuple(str(labels[n])[:100] for n in operation.label_names)
        if values in operation.label_sets:
            return values
        with self._lock:
            if len(operation.label_sets) < self._max_label_sets:
                operation.label_sets.add(values)
                return values
        return tuple(OTHER for _ in values)

    def record(
        self,
        name: str,
        operation: _Operation,
        labels: Labels,
        seconds: float,
        failed: bool,
        correlation_id: str | None,
    ) -> None:
        """One run of operation ``name`` (its families: :meth:`operation`)."""
        values = self.label_values(operation, labels)
        outcome = "failure" if failed else "success"
        operation.count.labels(*values, outcome).inc()
        histogram = operation.duration.labels(*values, outcome)
        exemplar = self._exemplar(correlation_id) if self._exemplars else None
        seconds = exact(seconds)
        if exemplar:
            histogram.observe(seconds, exemplar)
        else:
            histogram.observe(seconds)
        self.streak(name, failed)

    def streak(self, name: str, failed: bool) -> int:
        """Count a success (back to 0) or one more failure in a row of ``name``; returns the
        streak (0, and nothing recorded, past :data:`MAX_OPERATIONS` names)."""
        with self._lock:
            known = self._streaks.get(name)
            if known is None and len(self._streaks) >= self._max_operations:
                return 0
            value = self._streaks[name] = (known or 0) + 1 if failed else 0
        self.streaks.labels(name).set(value)
        return value

    def streak_of(self, name: str) -> int:
        return self._streaks.get(name, 0)

    def _exemplar(self, correlation_id: str | None) -> dict[str, str] | None:
        out: dict[str, str] = {}
        budget = _EXEMPLAR_BUDGET
        trace_id = self._trace_lookup() if self._trace_lookup is not None else None
        if trace_id is not None:
            out["trace_id"] = trace_id
            budget -= len("trace_id") + len(trace_id)
        if correlation_id is not None and len("correlation_id") + len(correlation_id) <= budget:
            out["correlation_id"] = correlation_id
        return out or None


# Process-wide, as the error capture layers are: outside an app context (a Celery task, a
# script, a thread) the first running app's operations record the run.
_live: list[Operations] = []
_live_lock = threading.Lock()
_failures = FailureLog()


def register(operations: Operations) -> Callable[[], None]:
    """Make ``operations`` the fallback outside app contexts while it is the first; returns
    the closer that forgets it."""
    with _live_lock:
        _live.append(operations)

    def forget() -> None:
        with _live_lock:
            if operations in _live:
                _live.remove(operations)

    return forget


def current_operations() -> Operations | None:
    """The operations of the current app, else of the first running app, else ``None``."""
    state = state_or_none()
    if state is not None:
        found = state.get(Operations)
        if found is not None:
            return found
    live = _live
    return live[0] if live else None


def _check_operation(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise MetricNameError("timed(): the operation is a non-empty metric name")
    check_name(f"{name}_total", "counter", ())


class Timing:
    """One run of a timed operation (what ``with timed(...) as timing`` gives).

    :param operation: the operation's name (the metrics' prefix).
    :param labels: its label values.
    """

    __slots__ = (
        "_families",
        "_operations",
        "_span",
        "_span_cm",
        "_started",
        "failed",
        "labels",
        "operation",
    )

    def __init__(self, operation: str, labels: Labels) -> None:
        self.operation = operation
        self.labels = dict(labels)
        #: The run counts as a failure (an exception, or :meth:`fail`).
        self.failed = False
        self._operations: Operations | None = None
        self._families: _Operation | None = None
        self._span_cm: Any = None
        self._span: Any = None
        self._started = 0.0

    def fail(self) -> None:
        """Count this run as a failure though nothing was raised (an API answered an error)."""
        self.failed = True

    def __enter__(self) -> Timing:
        operations = self._operations = current_operations()
        if operations is not None:
            # A name or label mistake is raised here, before the block runs.
            self._families = operations.operation(self.operation, tuple(self.labels))
        if operations is not None and operations.tracer is not None:
            try:
                self._span_cm = operations.tracer.start_as_current_span(
                    self.operation,
                    attributes={f"operation.{k}": str(v) for k, v in self.labels.items()},
                )
                self._span = self._span_cm.__enter__()
            except Exception:
                self._span_cm = None
                _failures(f"starting the span of timed({self.operation!r})")
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self._started
        failed = self.failed or (exc is not None and isinstance(exc, Exception))
        operations, families = self._operations, self._families
        if operations is None:
            return
        if families is not None:
            try:
                from ..context import get_correlation_id

                operations.record(
                    self.operation, families, self.labels, seconds, failed, get_correlation_id()
                )
            except Exception:
                _failures(f"recording timed({self.operation!r})")
        if self._span_cm is not None:
            try:
                if failed and exc is None:
                    from opentelemetry.trace import Status, StatusCode

                    self._span.set_status(Status(StatusCode.ERROR))
                self._span_cm.__exit__(exc_type, exc, tb)
            except Exception:
                _failures(f"ending the span of timed({self.operation!r})")
        if failed:
            error_type = type(exc).__name__ if exc is not None else "failed"
            logger.warning(
                "%s failed after %.3f s: %s",
                self.operation,
                seconds,
                f"{error_type}: {str(exc)[:200]}" if exc is not None else "marked as failed",
                extra={
                    "operation": self.operation,
                    "duration_seconds": round(seconds, 6),
                    "error_type": error_type,
                    **{f"operation_{k}": v for k, v in self.labels.items()},
                },
            )


class timed:
    """Time and count the app's own operation ``operation``: as a decorator or a context
    manager, in one line.

    ::

        @timed("scrape_account", labels={"platform": "twitter"})
        def scrape(account): ...

        with timed("export_batch") as timing:
            if not push(batch):
                timing.fail()

    :param operation: the metrics' prefix (``<operation>_duration_seconds``,
        ``<operation>_total``), a metric name.
    :param labels: label values, the same names on every use; for a decorator, a function of
        the call's arguments may give them
        (``labels=lambda account: {"platform": account.platform}``).
    :raises MetricNameError: at once, for a name that breaks the naming rules.
    """

    __slots__ = ("_labels", "_timing", "operation")

    def __init__(
        self,
        operation: str,
        labels: Labels | Callable[..., Labels] | None = None,
    ) -> None:
        _check_operation(operation)
        self.operation = operation
        self._labels = labels if labels is not None else {}
        self._timing: list[Timing] = []

    def _labels_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Labels:
        labels = self._labels
        if callable(labels):
            try:
                return labels(*args, **kwargs)
            except Exception:
                _failures(f"the labels of timed({self.operation!r})")
                return {}
        return labels

    def __call__(self, func: F) -> F:
        operation = self.operation
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with Timing(operation, self._labels_for(args, kwargs)):
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with Timing(operation, self._labels_for(args, kwargs)):
                return func(*args, **kwargs)

        return run  # type: ignore[return-value]

    def __enter__(self) -> Timing:
        if callable(self._labels):
            raise TypeError("timed(): labels given as a function need a decorated call")
        timing = Timing(self.operation, self._labels)
        self._timing.append(timing)
        return timing.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timing.pop().__exit__(exc_type, exc, tb)


class FailureStreak:
    """Consecutive failures of ``operation``, by hand: what :func:`timed` counts for itself,
    for code that learns of success and failure elsewhere (a callback, a result code). It sets
    ``operation_consecutive_failures{operation}`` in the current (else first running) app.

    ::

        streak = FailureStreak("instagram_login")
        streak.failed()  # 1, 2, ... in a row
        streak.succeeded()  # back to 0
    """

    __slots__ = ("operation",)

    def __init__(self, operation: str) -> None:
        _check_operation(operation)
        self.operation = operation

    def _count(self, failed: bool) -> int:
        operations = current_operations()
        if operations is None:
            return 0
        return operations.streak(self.operation, failed)

    def failed(self) -> int:
        """One more failure in a row; returns the streak."""
        return self._count(True)

    def succeeded(self) -> None:
        """A success: the streak is 0 again."""
        self._count(False)

    @property
    def count(self) -> int:
        """The current streak in this process's app (0 when nothing records it)."""
        operations = current_operations()
        return operations.streak_of(self.operation) if operations is not None else 0
