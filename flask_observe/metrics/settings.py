"""Keys of the metrics feature (docs/metrics.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import boolean, key, opt_boolean, str_tuple, url_path

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def buckets(value: Any) -> tuple[float, ...]:
    if isinstance(value, str):
        value = str_tuple(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("expected a list of increasing positive numbers")
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError("expected a list of increasing positive numbers") from None
    if any(n <= 0 or n != n for n in numbers) or list(numbers) != sorted(set(numbers)):
        raise ValueError("expected a list of increasing positive numbers")
    return numbers


_HOST_PATTERN = re.compile(
    r"\*|(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?"
)


def host_patterns(value: Any) -> tuple[str, ...]:
    """Host patterns (``host``, ``host:port``, ``*.domain``, ``*``), not URLs."""
    found = str_tuple(value)
    for pattern in found:
        if not _HOST_PATTERN.fullmatch(pattern):
            raise ValueError(f"{pattern!r} is not a host pattern (host, host:port or *.domain)")
    return found


@dataclass(frozen=True)
class MetricsSettings:
    """Keys of the metrics feature (docs/metrics.md)."""

    #: ``/metrics`` and the RED metrics; ``None``: on when ``prometheus_client`` is installed.
    metrics_enabled: bool | None = key(None, opt_boolean)
    metrics_path: str = key("/metrics", url_path)
    #: Put ``/metrics`` behind the shared auth (``OBSERVE_AUTH_TOKEN``/``_CALLBACK``).
    metrics_auth: bool = key(False, boolean)
    #: Upper bounds (seconds) of the request duration histogram's buckets.
    metrics_buckets: tuple[float, ...] = key(DEFAULT_BUCKETS, buckets)
    #: Trace IDs as exemplars on the duration histogram (OpenMetrics scrapes, tracing on).
    metrics_exemplars: bool = key(True, boolean)
    #: Metrics of outgoing ``requests`` calls; ``None``: on when requests is installed.
    metrics_outbound: bool | None = key(None, opt_boolean)
    #: The hosts outbound metrics name (``api.example.com``, ``api.example.com:8443``,
    #: ``*.example.com``); every other host is ``other``, so the labels stay bounded.
    metrics_outbound_hosts: tuple[str, ...] = key((), host_patterns)
