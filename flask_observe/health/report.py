"""The application/health+json document (draft-inadarei-api-health-check-06) and the score.

Root fields: ``status`` always; ``version``, ``releaseId``, ``serviceId``, ``description``,
``output`` (not for ``pass``) and ``checks`` with details. Each ``checks`` key is
``"<component>:<measurement>"`` and holds a list of objects with ``componentType``,
``observedValue``, ``observedUnit``, ``status``, ``time`` and ``output`` (not for ``pass``),
plus the additional keys the draft allows (section 4.10): ``critical``, ``durationMs`` and,
in the full report, ``recent``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .checks import Status
from .results import CheckResult, HealthReport, Trend, iso_time

__all__ = ["MEDIA_TYPE", "Identity", "document", "score"]

MEDIA_TYPE = "application/health+json"

#: Points taken off 100 (see docs/health.md#the-health-score).
CRITICAL_FAIL_PENALTY = 60
FAIL_PENALTY = 25
WARN_PENALTY = 10
SLOW_PENALTY = 5
INSTABILITY_PENALTY = 10


@dataclass(frozen=True)
class Identity:
    """The service fields of the document."""

    service_id: str
    version: str | None = None
    release_id: str | None = None
    description: str | None = None


def score(report: HealthReport) -> int:
    """The health score, 0-100: 100 minus penalties for what fails, warns, is slow or flaps.

    - 60 for each critical check failing, 25 for each other check failing;
    - 10 for each check warning;
    - 5 for each passing check that took more than half its deadline;
    - 10 x the share of failed runs in each check's recent history (when trends are known).
    """
    points = 100.0
    for result in report.results:
        if result.status is Status.FAIL:
            points -= CRITICAL_FAIL_PENALTY if result.critical else FAIL_PENALTY
        elif result.status is Status.WARN:
            points -= WARN_PENALTY
        elif result.duration > result.timeout / 2:
            points -= SLOW_PENALTY
        trend = report.trends.get(result.name)
        if trend is not None:
            points -= INSTABILITY_PENALTY * trend.fail_share
    return max(0, min(100, round(points)))


def document(report: HealthReport, identity: Identity, *, details: bool) -> dict[str, Any]:
    """The health+json object for ``report``; only ``status`` unless ``details``."""
    status = report.status
    doc: dict[str, Any] = {"status": status.value}
    if not details:
        return doc
    if identity.version:
        doc["version"] = identity.version
    if identity.release_id:
        doc["releaseId"] = identity.release_id
    doc["serviceId"] = identity.service_id
    if identity.description:
        doc["description"] = identity.description
    if status is not Status.PASS:
        doc["output"] = _summary(report.results, status)
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in report.results:
        trend = report.trends.get(result.name)
        for key, entry in _entries(result, trend):
            checks.setdefault(key, []).append(entry)
    if report.group is None:
        now = iso_time(time.time())
        checks["uptime"] = [
            {
                "componentType": "system",
                "observedValue": round(report.uptime, 3),
                "observedUnit": "s",
                "status": "pass",
                "time": now,
            }
        ]
        checks["score"] = [
            {
                "componentType": "system",
                "observedValue": score(report),
                "observedUnit": "percent",
                "status": status.value,
                "time": now,
            }
        ]
    doc["checks"] = checks
    return doc


def _summary(results: tuple[CheckResult, ...], status: Status) -> str:
    parts = []
    for r in results:
        if r.service_status is status or r.status is status:
            text = r.output or next((o.output for o in r.observations if o.output), None)
            parts.append(f"{r.name}: {text or r.status.value}")
    return "; ".join(parts)


def _entries(result: CheckResult, trend: Trend | None) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for obs in result.observations:
        component = obs.component or result.name
        key = f"{component}:{obs.measurement}" if obs.measurement else component
        entry: dict[str, Any] = {"componentType": obs.component_type or result.component_type}
        if obs.value is not None:
            entry["observedValue"] = obs.value
            if obs.unit:
                entry["observedUnit"] = obs.unit
        entry["status"] = obs.status.value
        entry["time"] = result.time
        if obs.status is not Status.PASS and obs.output:
            entry["output"] = obs.output
        entry.update(obs.extra)
        entry["critical"] = result.critical
        entry["durationMs"] = round(result.duration * 1000, 3)
        if trend is not None:
            entry["recent"] = {
                "runs": trend.runs,
                "pass": trend.passed,
                "warn": trend.warned,
                "fail": trend.failed,
                "latencyMsP50": trend.latency_ms_p50,
                "latencyMsMax": trend.latency_ms_max,
            }
        out.append((key, entry))
    return out
