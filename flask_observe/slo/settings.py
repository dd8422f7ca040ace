"""Keys of the SLO feature (docs/slo.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import integer, key, number, ratio


@dataclass(frozen=True)
class SloSettings:
    """Keys of the SLO feature (docs/slo.md)."""

    #: Share of requests that must not answer 5xx (0 turns the availability SLO off).
    slo_availability: float = key(0.999, ratio)
    #: Share of requests that must be faster than ``slo_latency_seconds`` (0: off).
    slo_latency: float = key(0.99, ratio)
    #: Latency threshold of the latency SLO; must be one of ``metrics_buckets``.
    slo_latency_seconds: float = key(0.5, number(0.0))
    #: Health warns when less than this share of an error budget is left.
    slo_budget_warn: float = key(0.1, ratio)
    #: The in-process budgets are judged on this process's requests of the last this many
    #: seconds (the fleet-wide 30-day view is Prometheus': docs/slo.md).
    slo_window_seconds: float = key(3600.0, number(60.0))
    #: Fewer requests than this in the window (or than the budget needs to allow one bad
    #: request: 1,000 at 99.9 %): not judged yet.
    slo_min_requests: int = key(100, integer(1))
