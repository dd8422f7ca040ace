"""What a channel keeps while its receiver throttles it (429 with ``Retry-After``).

At most ``size`` alerts, the most important ones (most severe; among equals, the earliest);
the rest are counted by severity and dropped. When the channel opens again it gets the one
alert held, or a summary of them all, never the backlog.
"""

from __future__ import annotations

from collections import Counter

from .model import SEVERITIES, Alert

__all__ = ["SUMMARY_NAME", "Hold"]

#: The name of the summary sent when a throttled channel opens.
SUMMARY_NAME = "FlaskObserveHeldAlerts"
#: Held alerts named in a summary's description (the most important first).
SUMMARY_LINES = 10
_NAMED = 3


def _rank(alert: Alert) -> int:
    return SEVERITIES.index(alert.severity)  # 0: critical, the most important


class Hold:
    """Alerts held for one throttled channel.

    :param size: most alerts kept (at least 1).
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._alerts: list[tuple[int, Alert]] = []
        self._ranks: Counter[int] = Counter()
        #: Every alert routed to the channel while it was throttled.
        self.total = 0
        #: Alerts dropped to stay within ``size``, by severity.
        self.dropped: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._alerts)

    def add(self, alert: Alert) -> Alert | None:
        """Keep ``alert`` if there is room or it is more important than one held; returns the
        alert dropped (``alert`` itself, one held before, or ``None``)."""
        self.total += 1
        rank = _rank(alert)
        dropped: Alert | None = None
        if len(self._alerts) >= self.size:
            worst = max(r for r, count in self._ranks.items() if count > 0)
            if rank >= worst:
                self.dropped[alert.severity] += 1
                return alert
            # Among the least important, the latest goes: the earliest tell how it started.
            index = max(i for i, (_, a) in enumerate(self._alerts) if _rank(a) == worst)
            _, dropped = self._alerts.pop(index)
            self._ranks[worst] -= 1
            self.dropped[dropped.severity] += 1
        self._alerts.append((self.total, alert))
        self._ranks[rank] += 1
        return dropped

    def release(self, channel: str, service: str, now: float) -> Alert:
        """What the channel gets when it opens: the alert held if it was the only one, else
        a summary (``now``: its epoch timestamp)."""
        if self.total == 1 and self._alerts:
            return self._alerts[0][1]
        kept = [a for _, a in sorted(self._alerts, key=lambda item: (_rank(item[1]), item[0]))]
        counts = Counter(a.severity for a in kept) + self.dropped
        severity = next(s for s in SEVERITIES if counts[s])
        named = ", ".join(a.title for a in kept[:_NAMED])
        more = self.total - min(_NAMED, len(kept))
        summary = f"{self.total} alerts held while the channel was throttled: {named}"
        if more:
            summary += f" and {more} more"
        lines = [", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s]), ""]
        lines += [f"{a.title}: {a.summary}" for a in kept[:SUMMARY_LINES]]
        if len(kept) > SUMMARY_LINES:
            lines.append(f"… and {len(kept) - SUMMARY_LINES} more held")
        dropped = sum(self.dropped.values())
        if dropped:
            lines.append(
                f"{dropped} not kept: at most {self.size} alerts are held per channel,"
                " the least important were dropped"
            )
        return Alert(
            name=SUMMARY_NAME,
            severity=severity,
            summary=summary,
            description="\n".join(lines),
            labels={"channel": channel},
            service=service,
            timestamp=now,
        )
