"""What a check run produces: :class:`CheckResult`, the :class:`Trend` of recent ones, the
:class:`HealthReport` of a probe, and :func:`call_check`, which turns ``run()``'s outcome or
exception into a result."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .checks import CheckFailed, CheckWarning, HealthCheck, Observation, Status, redact, worst

__all__ = ["CheckResult", "HealthReport", "Trend", "call_check", "iso_time", "make_result"]


def iso_time(timestamp: float) -> str:
    """``timestamp`` (``time.time()``) in ISO 8601, UTC, milliseconds."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class CheckResult:
    """One run of one check.

    :ivar status: the check's own status; see :attr:`service_status` for its effect.
    :ivar duration: seconds the run took (the deadline, for a timed-out run).
    :ivar timestamp: ``time.time()`` when the result was recorded.
    :ivar timeout: the check's deadline, seconds.
    :ivar ttl: seconds the result is reused for.
    """

    name: str
    critical: bool
    status: Status
    observations: tuple[Observation, ...]
    duration: float
    timestamp: float
    timeout: float
    groups: tuple[str, ...] = ()
    component_type: str = "component"
    output: str | None = None
    timed_out: bool = False
    ttl: float = 0.0

    @property
    def time(self) -> str:
        """``timestamp`` in ISO 8601 (UTC), the document's ``time`` field."""
        return iso_time(self.timestamp)

    @property
    def service_status(self) -> Status:
        """What this result does to the service: a non-critical failure only warns."""
        if self.status is Status.FAIL and not self.critical:
            return Status.WARN
        return self.status


@dataclass(frozen=True)
class Trend:
    """The recent results of one check."""

    runs: int
    passed: int
    warned: int
    failed: int
    latency_ms_p50: float | None
    latency_ms_max: float | None

    @property
    def fail_share(self) -> float:
        return self.failed / self.runs if self.runs else 0.0

    @classmethod
    def of(cls, history: Sequence[CheckResult]) -> Trend:
        latencies = sorted(r.duration * 1000 for r in history)
        return cls(
            runs=len(history),
            passed=sum(r.status is Status.PASS for r in history),
            warned=sum(r.status is Status.WARN for r in history),
            failed=sum(r.status is Status.FAIL for r in history),
            latency_ms_p50=round(latencies[len(latencies) // 2], 3) if latencies else None,
            latency_ms_max=round(latencies[-1], 3) if latencies else None,
        )


@dataclass(frozen=True)
class HealthReport:
    """The results of one probe (``group`` ``None``: every check)."""

    group: str | None
    results: tuple[CheckResult, ...]
    trends: dict[str, Trend] = field(default_factory=dict)
    uptime: float = 0.0

    @property
    def status(self) -> Status:
        """Fail if a critical check fails; warn if any other fails or warns; else pass."""
        return worst(r.service_status for r in self.results)


def make_result(
    check: HealthCheck,
    status: Status,
    observations: tuple[Observation, ...],
    duration: float,
    output: str | None,
    *,
    ttl: float,
    timed_out: bool = False,
) -> CheckResult:
    """A result; without observations, one ``responseTime`` entry carrying the status."""
    if not observations:
        observations = (
            Observation("responseTime", round(duration * 1000, 3), "ms", status, output=output),
        )
    return CheckResult(
        name=check.name,
        critical=check.critical,
        status=status,
        observations=observations,
        duration=duration,
        timestamp=time.time(),
        timeout=check.timeout or 0.0,
        groups=check.groups,
        component_type=check.component_type,
        output=output,
        timed_out=timed_out,
        ttl=ttl,
    )


def call_check(check: HealthCheck, ttl: float, on_error: Callable[[str], None]) -> CheckResult:
    """Run ``check`` once in this thread and describe the outcome.

    :param on_error: called (inside ``except``) with a description of an unexpected error;
        the caller logs it with the traceback. The result then only says "unknown error".
    """
    secrets = list(check.secrets())
    started = time.perf_counter()
    try:
        outcome = check.run()
    except (CheckWarning, CheckFailed) as exc:
        status = Status.WARN if isinstance(exc, CheckWarning) else Status.FAIL
        message = redact(str(exc) or type(exc).__name__, secrets)
        return make_result(check, status, (), time.perf_counter() - started, message, ttl=ttl)
    except Exception:
        on_error(f"health check {check.name!r}")
        duration = time.perf_counter() - started
        return make_result(check, Status.FAIL, (), duration, "unknown error", ttl=ttl)
    duration = time.perf_counter() - started
    if outcome is None:
        observations: tuple[Observation, ...] = ()
    elif isinstance(outcome, Observation):
        observations = (outcome,)
    else:
        try:
            observations = tuple(outcome)
            if not all(isinstance(o, Observation) for o in observations):
                raise TypeError(f"{check.name}.run() returned {type(outcome).__name__}")
        except TypeError:
            on_error(f"health check {check.name!r} (run() must return Observation objects)")
            return make_result(check, Status.FAIL, (), duration, "unknown error", ttl=ttl)
    for obs in observations:
        if obs.output:
            obs.output = redact(obs.output, secrets)
    status = worst(o.status for o in observations)
    output = next((o.output for o in observations if o.status is status and o.output), None)
    return make_result(check, status, observations, duration, output, ttl=ttl)
