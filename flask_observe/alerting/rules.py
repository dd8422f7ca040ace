"""In-process alert rules, evaluated periodically on the app's own metrics and health.

A rule is anything with ``name``, ``severity`` and ``evaluate() -> str | None``: ``None``
means fine, a string says what is wrong. The :class:`RuleEngine` fires an alert after
``consecutive`` failing evaluations in a row and resolves it at the first passing one; the
router's store makes sure several instances send one notification per incident.

The views are per process: under gunicorn each worker evaluates its own requests (the shipped
Prometheus rules give the fleet-wide view).
"""

from __future__ import annotations

import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .._clock import SYSTEM, Clock
from .model import FIRING, RESOLVED, Alert

if TYPE_CHECKING:
    from ..metrics.http import HttpMetrics
    from .router import AlertRouter

__all__ = [
    "BreakerRule",
    "CheckRule",
    "DiskRule",
    "ErrorRateRule",
    "HealthRule",
    "HttpWindow",
    "LatencyRule",
    "MemoryRule",
    "Rule",
    "RuleEngine",
]


class Rule(Protocol):
    name: str
    severity: str

    def evaluate(self) -> str | None:
        """``None`` when fine; otherwise one line saying what is wrong."""


@dataclass
class CheckRule:
    """A rule from a function: ``check()`` returns ``None`` when fine, else the problem.

    :param labels: fixed labels (part of the fingerprint).
    :param consecutive: overrides the engine's failing evaluations before firing.
    :param resolve_after: overrides the engine's seconds of passing before resolving.
    """

    name: str
    check: Callable[[], str | None]
    severity: str = "error"
    labels: Mapping[str, str] = field(default_factory=dict)
    consecutive: int | None = None
    resolve_after: float | None = None

    def evaluate(self) -> str | None:
        return self.check()


class HttpWindow:
    """Request totals sampled from the RED metrics, for rates over a sliding window.

    Reading the metrics every few seconds costs nothing per request.
    """

    def __init__(self, http: HttpMetrics, window: float, clock: Clock = SYSTEM) -> None:
        self.http = http
        self.window = window
        self.clock = clock
        self._samples: deque[tuple[float, float, float, dict[float, float]]] = deque()
        self._lock = threading.Lock()

    def _read(self) -> tuple[float, float, dict[float, float]]:
        total = errors = 0.0
        for family in self.http.requests.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    total += sample.value
                    if sample.labels.get("status", "").startswith("5"):
                        errors += sample.value
        buckets: dict[float, float] = {}
        for family in self.http.duration.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
        return total, errors, buckets

    def sample(self, now: float | None = None) -> None:
        now = self.clock.monotonic() if now is None else now
        total, errors, buckets = self._read()
        with self._lock:
            self._samples.append((now, total, errors, buckets))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
                self._samples.popleft()

    def _delta(self) -> tuple[float, float, dict[float, float]] | None:
        with self._lock:
            if len(self._samples) < 2:
                return None
            _, t0, e0, b0 = self._samples[0]
            _, t1, e1, b1 = self._samples[-1]
        return t1 - t0, e1 - e0, {le: count - b0.get(le, 0.0) for le, count in b1.items()}

    def error_rate(self, min_requests: int = 10) -> float | None:
        """Share of 5xx over the window; ``None`` with fewer than ``min_requests``."""
        delta = self._delta()
        if delta is None or delta[0] < min_requests:
            return None
        return delta[1] / delta[0]

    def quantile(self, q: float, min_requests: int = 10) -> float | None:
        """Latency quantile over the window, interpolated in its bucket like PromQL's
        ``histogram_quantile``; ``None`` with fewer than ``min_requests``."""
        delta = self._delta()
        if delta is None:
            return None
        buckets = sorted(delta[2].items())
        count = buckets[-1][1] if buckets else 0.0
        if count < min_requests:
            return None
        rank = q * count
        lower, below = 0.0, 0.0
        for le, cumulative in buckets:
            if cumulative >= rank:
                if le == float("inf"):
                    return lower
                inside = cumulative - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = le, cumulative
        return lower


@dataclass
class ErrorRateRule:
    """Share of 5xx responses over the window above ``threshold``."""

    window: HttpWindow
    threshold: float
    name: str = "HighErrorRate"
    severity: str = "error"

    def evaluate(self) -> str | None:
        rate = self.window.error_rate()
        if rate is None or rate <= self.threshold:
            return None
        return (
            f"{rate:.1%} of requests failed (5xx) over the last {self.window.window:.0f}s"
            f" (threshold {self.threshold:.1%})"
        )


@dataclass
class LatencyRule:
    """95th percentile of request duration over the window above ``threshold`` seconds."""

    window: HttpWindow
    threshold: float
    name: str = "HighLatency"
    severity: str = "warning"

    def evaluate(self) -> str | None:
        p95 = self.window.quantile(0.95)
        if p95 is None or p95 <= self.threshold:
            return None
        return (
            f"p95 latency {p95:.3f}s over the last {self.window.window:.0f}s"
            f" (threshold {self.threshold}s)"
        )


@dataclass
class MemoryRule:
    """Process RSS above ``max_mb`` or growing faster than ``growth_mb_per_hour``."""

    rss_bytes: Callable[[], float | None]
    growth_mb_per_hour: Callable[[], float | None]
    max_mb: float = 0.0
    growth_threshold: float = 0.0
    name: str = "HighMemory"
    severity: str = "warning"

    def evaluate(self) -> str | None:
        rss = self.rss_bytes()
        if self.max_mb and rss is not None and rss / 1e6 > self.max_mb:
            return f"RSS {rss / 1e6:.0f} MB (threshold {self.max_mb:.0f} MB)"
        growth = self.growth_mb_per_hour()
        if self.growth_threshold and growth is not None and growth > self.growth_threshold:
            return f"memory growing {growth:.1f} MB/hour (threshold {self.growth_threshold})"
        return None


@dataclass
class DiskRule:
    """Free share of the file system holding ``path`` under ``min_free``."""

    path: str
    min_free: float
    name: str = "LowDiskSpace"
    severity: str = "warning"

    def evaluate(self) -> str | None:
        usage = shutil.disk_usage(self.path)
        free = usage.free / usage.total if usage.total else 1.0
        if free >= self.min_free:
            return None
        return f"{free:.1%} free on {self.path} (threshold {self.min_free:.0%})"


@dataclass
class BreakerRule:
    """Any circuit breaker open. ``states()`` yields ``(name, state)`` pairs, e.g.
    :func:`pybreaker_states` over ``pybreaker.CircuitBreaker`` objects."""

    states: Callable[[], Iterable[tuple[str, str]]]
    name: str = "CircuitBreakerOpen"
    severity: str = "error"

    def evaluate(self) -> str | None:
        opened = sorted(name for name, state in self.states() if state == "open")
        return f"circuit breaker(s) open: {', '.join(opened)}" if opened else None


def pybreaker_states(*breakers: Any) -> Callable[[], list[tuple[str, str]]]:
    """``states`` for :class:`BreakerRule` from pybreaker ``CircuitBreaker`` objects."""

    def states() -> list[tuple[str, str]]:
        return [(str(b.name or id(b)), str(b.current_state)) for b in breakers]

    return states


@dataclass
class HealthRule:
    """Any health check failing. ``results()`` maps check names to ``True`` (passing) or a
    failure reason."""

    results: Callable[[], Mapping[str, bool | str]]
    name: str = "HealthCheckFailing"
    severity: str = "error"

    def evaluate(self) -> str | None:
        failing = sorted(name for name, ok in self.results().items() if ok is not True)
        return f"health check(s) failing: {', '.join(failing)}" if failing else None


@dataclass
class _RuleState:
    failing: int = 0
    firing: bool = False
    last: str | None = None
    #: When a firing rule started passing (it resolves ``resolve_after`` seconds later).
    passing_since: float | None = None


class RuleEngine:
    """Evaluates rules and turns their transitions into alerts.

    :param router: where alerts go.
    :param consecutive: failing evaluations in a row before an alert fires.
    :param service: the alerts' ``service``.
    :param resolve_after: seconds a firing rule must pass in a row before it resolves; a
        failing evaluation meanwhile keeps it firing and starts the wait again (a rule may
        override it with a ``resolve_after`` attribute).
    :param clock: what ``resolve_after`` is measured on.
    """

    def __init__(
        self,
        router: AlertRouter,
        consecutive: int = 3,
        service: str = "",
        *,
        resolve_after: float = 60.0,
        clock: Clock = SYSTEM,
    ) -> None:
        self.router = router
        self.consecutive = consecutive
        self.service = service
        self.resolve_after = resolve_after
        self.clock = clock
        self.rules: list[Any] = []
        self._states: dict[int, _RuleState] = {}
        self._lock = threading.Lock()

    def add(self, rule: Any) -> Any:
        """Add a rule (anything with ``name``, ``severity`` and ``evaluate()``)."""
        self.rules.append(rule)
        return rule

    def evaluate(self) -> list[Alert]:
        """Evaluate every rule once; returns the alerts this round raised."""
        raised: list[Alert] = []
        with self._lock:
            for rule in list(self.rules):
                alert = self._evaluate(rule)
                if alert is not None:
                    raised.append(alert)
        for alert in raised:
            self.router.notify(alert)
        return raised

    def _evaluate(self, rule: Any) -> Alert | None:
        state = self._states.setdefault(id(rule), _RuleState())
        try:
            problem = rule.evaluate()
        except Exception as exc:
            problem = f"rule could not be evaluated: {type(exc).__name__}: {exc}"
        needed = getattr(rule, "consecutive", None) or self.consecutive
        if problem is None:
            state.failing = 0
            if not state.firing:
                return None
            now = self.clock.monotonic()
            if state.passing_since is None:
                state.passing_since = now
            wait = getattr(rule, "resolve_after", None)
            if now - state.passing_since < (self.resolve_after if wait is None else wait):
                return None
            state.firing = False
            state.passing_since = None
            return self._alert(rule, RESOLVED, f"{rule.name} is back to normal", state.last or "")
        state.passing_since = None
        state.failing += 1
        state.last = problem
        if not state.firing and state.failing < needed:
            return None
        state.firing = True
        return self._alert(rule, FIRING, problem, "")

    def _alert(self, rule: Any, status: str, summary: str, description: str) -> Alert:
        return Alert(
            name=rule.name,
            severity=rule.severity,
            summary=summary,
            description=description,
            labels=dict(getattr(rule, "labels", {}) or {}),
            status=status,
            service=self.service,
        )
