"""Keys of the metrics feature (docs/metrics.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import boolean, integer, key, opt_boolean, opt_text, str_tuple, text, url_path

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


#: Broker URL schemes read over AMQP (RabbitMQ); the others a Redis broker's.
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def broker_url(value: Any) -> str | None:
    """A Redis (``redis://``, ``rediss://``, ``unix://``) or RabbitMQ (``amqp://``,
    ``amqps://``, ``pyamqp://``) broker URL, or nothing."""
    found = opt_text(value)
    if found is not None and not found.startswith(REDIS_SCHEMES + AMQP_SCHEMES):
        raise ValueError(
            "expected a redis://, rediss://, unix://, amqp://, amqps:// or pyamqp:// URL"
            " (the Celery broker)"
        )
    return found


def queue_names(value: Any) -> tuple[str, ...]:
    found = str_tuple(value)
    for name in found:
        if len(name) > 200 or not name.isprintable():
            raise ValueError(f"{name[:40]!r}… is not a queue name")
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
    #: Metrics of the Celery tasks this process runs (a worker); ``None``: on when Celery is
    #: installed.
    metrics_celery: bool | None = key(None, opt_boolean)
    #: The Celery queues named in the metrics (the rest are ``other``) and whose length is read
    #: from the broker.
    metrics_celery_queues: tuple[str, ...] = key((), queue_names)
    #: The Redis or RabbitMQ broker the queue lengths are read from (never shown); unset: not read.
    metrics_celery_broker_url: str | None = key(None, broker_url, secret=True)
    #: A Celery worker serves its metrics over HTTP on this port (0: it does not).
    metrics_celery_port: int = key(0, integer(0, 65535))
    #: The address the worker's metrics server listens on.
    metrics_celery_address: str = key("127.0.0.1", text)
