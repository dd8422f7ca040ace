"""Keys of alerting (docs/alerting.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config import boolean, integer, key, number, opt_text, ratio, str_tuple, text


def channels(value: Any) -> tuple[Mapping[str, Any], ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("expected a JSON list of channel objects") from None
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, Mapping) for v in value):
        raise ValueError("expected a list of channel objects")
    # Validated in depth (URL safety, required fields) by the alerting setup.
    return tuple(dict(v) for v in value)


_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\.?")


def allow_hosts(value: Any) -> tuple[str, ...]:
    """Host names, addresses (``[v6]`` too) or CIDR networks; a network that does not parse
    (``10.0.0.0/33``) is an error, not an entry that silently allows nothing."""
    entries = str_tuple(value)
    for entry in entries:
        bare = entry.strip("[]")
        try:
            ipaddress.ip_network(bare, strict=False)
            continue
        except ValueError as exc:
            if "/" in bare or bare.replace(".", "").isdigit() or ":" in bare:
                raise ValueError(f"{entry!r} is not a valid address or network: {exc}") from None
        if not _HOST_NAME.fullmatch(bare):
            raise ValueError(f"{entry!r} is not a host name, address or network")
    return entries


def redis_url(value: Any) -> str | None:
    """A ``redis://``, ``rediss://`` or ``unix://`` URL (``localhost:6379`` is refused: redis-py
    would read it as a path)."""
    url = opt_text(value)
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected a redis://host:port/db, rediss://… or unix://… URL")
    if parts.scheme != "unix":
        if not parts.hostname:
            raise ValueError("expected a host: redis://host:port/db")
        try:
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            raise ValueError("expected a port from 1 to 65535") from None
    return url


@dataclass(frozen=True)
class AlertingSettings:
    """Keys of alerting (docs/alerting.md)."""

    #: Channels, each ``{"type": "slack"|"discord"|"pagerduty"|"email"|"webhook", ...}``;
    #: alerting is on when any is configured. Holds webhook URLs and keys: never shown.
    alert_channels: tuple[Mapping[str, Any], ...] = key((), channels, secret=True)
    #: Plain ``http://`` webhook URLs are refused unless this is on.
    alert_allow_http: bool = key(False, boolean)
    #: Hosts, addresses or networks (CIDR) webhooks may reach although they are loopback,
    #: private or link-local.
    alert_allow_hosts: tuple[str, ...] = key((), allow_hosts)
    #: Redis URL for state shared by every instance (dedup, cooldown, incidents).
    alert_redis_url: str | None = key(None, redis_url, secret=True)
    alert_redis_prefix: str = key("flask_observe:alerts", text)
    #: While that Redis is unreachable each process dedups on its own and tries it again
    #: this often.
    alert_redis_retry_seconds: float = key(5.0, number(0.1))
    #: The same alert (fingerprint and status) is notified at most once per window.
    alert_dedup_seconds: float = key(3600.0, number(0.0))
    #: Minimum time between two firing notifications of one alert name.
    alert_cooldown_seconds: float = key(300.0, number(0.0))
    alert_queue_size: int = key(1000, integer(1))
    #: Alerts kept per channel while its receiver throttles it (429 Retry-After); the least
    #: important beyond are dropped and counted, and one summary goes out when it opens.
    alert_hold_size: int = key(100, integer(1))
    alert_timeout_seconds: float = key(5.0, number(0.1))
    #: In-process rules; failing evaluations in a row before one fires.
    alert_rules_enabled: bool = key(True, boolean)
    alert_rules_consecutive: int = key(3, integer(1))
    #: A firing rule resolves only once it has passed for this long in a row (hysteresis).
    alert_resolve_after_seconds: float = key(60.0, number(0.0))
    alert_error_rate: float = key(0.05, ratio)
    alert_error_rate_window_seconds: float = key(300.0, number(1.0))
    alert_latency_seconds: float = key(2.0, number(0.0))
    #: Process RSS above this (MB) alerts; 0: never.
    alert_memory_mb: float = key(0.0, number(0.0))
    #: Free space of ``alert_disk_path`` below this share alerts; 0: never.
    alert_disk_free: float = key(0.05, ratio)
