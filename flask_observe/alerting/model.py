"""What an alert is: a named condition with a severity, labels and a status."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SEVERITIES", "Alert"]

#: Severities, most urgent first.
SEVERITIES = ("critical", "error", "warning", "info")
FIRING = "firing"
RESOLVED = "resolved"


@dataclass(frozen=True)
class Alert:
    """One notification about one condition.

    :param name: what is wrong, e.g. ``HighErrorRate`` (one name per rule).
    :param severity: ``critical``, ``error``, ``warning`` or ``info``; picks the channels.
    :param summary: one line for a person.
    :param description: details (may be empty).
    :param labels: what tells two instances of the same alert apart (``{"route": "/x"}``);
        part of the fingerprint, so keep them bounded.
    :param status: ``firing`` or ``resolved``.
    :param service: the service that raised it.
    :param cooldown: overrides ``OBSERVE_ALERT_COOLDOWN_SECONDS`` for this alert's name.
    """

    name: str
    severity: str = "error"
    summary: str = ""
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    status: str = FIRING
    service: str = ""
    cooldown: float | None = None
    timestamp: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        if self.status not in (FIRING, RESOLVED):
            raise ValueError("status must be 'firing' or 'resolved'")

    @property
    def fingerprint(self) -> str:
        """Stable ID of the condition: service, name and labels (not status or text)."""
        parts = [self.service, self.name] + [f"{k}={v}" for k, v in sorted(self.labels.items())]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]

    @property
    def title(self) -> str:
        mark = "RESOLVED" if self.status == RESOLVED else self.severity.upper()
        return f"[{mark}] {self.name}" + (f" ({self.service})" if self.service else "")

    def to_dict(self) -> dict[str, Any]:
        """The generic JSON webhook payload."""
        return {
            "name": self.name,
            "status": self.status,
            "severity": self.severity,
            "summary": self.summary,
            "description": self.description,
            "labels": dict(self.labels),
            "service": self.service,
            "fingerprint": self.fingerprint,
            "timestamp": self.timestamp,
        }
