"""The ``alertmanager`` channel: alerts posted to Prometheus Alertmanager's API v2.

Alertmanager expects what Prometheus does: every alert still firing posted again at an interval
(``POST /api/v2/alerts``, a JSON array), each with an ``endsAt`` a few intervals ahead (it
resolves an alert nobody re-posts once ``endsAt`` has passed), and the alert posted once more
with ``endsAt`` set to the moment it resolved. It does the deduplication, grouping, inhibition
and routing itself, so the router hands this channel every alert (no dedup or cooldown of its
own) and the channel keeps the open incidents of this process: new and resolved ones are posted
at once, firing ones again every ``resend`` seconds, all that are due in one request.

Labels: ``alertname`` (the in-process rules' names are those of the shipped Prometheus rules,
``FlaskObserveCircuitBreakerOpen`` for ``CircuitBreakerOpen``, so both paths group together),
``severity``, ``service``, ``instance`` (this host: the pod's name in Kubernetes), ``pid``
(each worker process evaluates its own rules), the channel's static ``labels`` and the alert's
own. Annotations: ``summary``, ``description``, ``runbook_url``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._clock import SYSTEM, Clock
from .channels import CHANNEL_TYPES, DeliveryError, WebhookChannel
from .model import RESOLVED, Alert
from .prometheus import DEFAULT_RUNBOOK_BASE
from .urls import UrlPolicy

__all__ = ["PROMETHEUS_NAMES", "AlertmanagerChannel", "Incident"]

#: The in-process rules' names -> the names of the shipped Prometheus rules for the same
#: condition (docs/runbooks/ has a page for each).
PROMETHEUS_NAMES = {
    "HighErrorRate": "FlaskObserveHighErrorRate",
    "HighLatency": "FlaskObserveHighLatency",
    "HighMemory": "FlaskObserveMemoryGrowing",
    "LowDiskSpace": "FlaskObserveLowDiskSpace",
    "CircuitBreakerOpen": "FlaskObserveCircuitBreakerOpen",
    "HealthCheckFailing": "FlaskObserveHealthCheckFailing",
}
#: Alert names with a runbook under ``runbook_base`` (the shipped ones).
_RUNBOOKS = frozenset((*PROMETHEUS_NAMES.values(), "FlaskObserveTargetDown"))
#: A firing alert's ``endsAt`` is this many resend intervals ahead (as Prometheus does): a
#: process that stops posting it (crashed, recycled) lets it resolve by itself.
ENDS_AFTER_RESENDS = 4
#: Open incidents kept per process; a new one beyond is dropped (and the drop logged).
MAX_OPEN = 1000
API_PATH = "/api/v2/alerts"
_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")


def label_name(name: str) -> str:
    """``name`` as a valid Prometheus label name (``[A-Za-z_][A-Za-z0-9_]*``)."""
    cleaned = _LABEL_NAME.sub("_", name) or "_"
    return cleaned if not cleaned[0].isdigit() else f"_{cleaned}"


def rfc3339(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Incident:
    """An alert of this process Alertmanager is told about.

    :ivar alert: the latest notification of it (firing, or the resolve to post).
    :ivar started: epoch seconds of its first firing notification (``startsAt``).
    :ivar sent: monotonic time of the last successful post, ``None`` when a change waits.
    """

    alert: Alert
    started: float
    sent: float | None = None


class AlertmanagerChannel(WebhookChannel):
    """Posts alerts to Alertmanager (``<url>/api/v2/alerts``).

    :param url: Alertmanager's base URL (``https://alertmanager.example.com``), or the full
        ``…/api/v2/alerts`` URL.
    :param resend: seconds between two posts of an alert still firing.
    :param runbook_base: where the shipped runbooks are (``<base>/<alertname>.md``).
    :param runbooks: ``{alertname: url}`` for alerts of your own.
    :param instance: the ``instance`` label (default: the host name, a pod's name).
    :param labels: static labels added to every alert (``{"cluster": "eu-1"}``).
    :param generator_url: the ``generatorURL`` (where to look: your health or log viewer
        page); omitted when not given.
    """

    kind = "alertmanager"
    #: The router gives this channel every alert, and asks it what is due (its receiver
    #: dedups and groups; the channel resends while an incident is open).
    repeats = True

    def __init__(
        self,
        name: str,
        severities: Sequence[str],
        timeout: float,
        url: str,
        policy: UrlPolicy,
        headers: Mapping[str, str] | None = None,
        *,
        resend: float = 60.0,
        runbook_base: str = DEFAULT_RUNBOOK_BASE,
        runbooks: Mapping[str, str] | None = None,
        instance: str | None = None,
        labels: Mapping[str, str] | None = None,
        generator_url: str | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        url = url.rstrip("/")
        if not url.endswith(API_PATH):
            url += API_PATH
        super().__init__(name, severities, timeout, url, policy, headers)
        if resend <= 0:
            raise ValueError("resend_seconds must be positive")
        self.resend = float(resend)
        self.runbook_base = runbook_base.rstrip("/")
        self.runbooks = dict(runbooks or {})
        self.instance = instance or socket.gethostname()
        self.static_labels = {label_name(str(k)): str(v) for k, v in (labels or {}).items()}
        self.generator_url = generator_url
        self.clock = clock
        self.incidents: dict[str, Incident] = {}
        #: Monotonic time before which nothing is posted (after a failure or a 429).
        self.retry_at = 0.0
        #: Failed posts in a row (the backoff after a failure without Retry-After).
        self.failures = 0
        #: New incidents not kept because :data:`MAX_OPEN` were open.
        self.dropped = 0

    # -- what is posted --------------------------------------------------------------------

    def alertname(self, alert: Alert) -> str:
        return PROMETHEUS_NAMES.get(alert.name, alert.name)

    def runbook_url(self, alertname: str) -> str | None:
        if alertname in self.runbooks:
            return self.runbooks[alertname]
        if alertname in _RUNBOOKS:
            return f"{self.runbook_base}/{alertname}.md"
        return None

    def payload_of(self, alert: Alert, started: float, now: float) -> dict[str, Any]:
        """One element of the posted array: ``alert`` as Alertmanager takes it, ``now`` the
        epoch time of the post."""
        alertname = self.alertname(alert)
        labels = {**self.static_labels}
        labels.update({label_name(str(k)): str(v) for k, v in alert.labels.items()})
        labels.update(
            alertname=alertname,
            severity=alert.severity,
            service=alert.service,
            instance=self.instance,
            pid=str(os.getpid()),
        )
        annotations = {"summary": alert.summary}
        if alert.description:
            annotations["description"] = alert.description
        runbook = self.runbook_url(alertname)
        if runbook:
            annotations["runbook_url"] = runbook
        ends = (
            max(alert.timestamp, started)
            if alert.status == RESOLVED
            else now + ENDS_AFTER_RESENDS * self.resend
        )
        body: dict[str, Any] = {
            "labels": {k: v for k, v in labels.items() if v != ""},
            "annotations": annotations,
            "startsAt": rfc3339(started),
            "endsAt": rfc3339(ends),
        }
        if self.generator_url:
            body["generatorURL"] = self.generator_url
        return body

    def send(self, alert: Alert) -> None:
        """Post ``alert`` alone, now (``flask observe alerts test``)."""
        now = self.clock.time()
        self.post(json.dumps([self.payload_of(alert, alert.timestamp, now)]).encode())

    # -- the open incidents (the router's sender thread) ----------------------------------

    def record(self, alert: Alert) -> None:
        """Take a notification: a new incident or a resolve is due at once; a repeat of one
        firing only refreshes what the next resend says."""
        key = alert.fingerprint
        incident = self.incidents.get(key)
        if alert.status == RESOLVED:
            if incident is not None and incident.alert.status != RESOLVED:
                incident.alert, incident.sent = alert, None
            return
        if incident is None or incident.alert.status == RESOLVED:
            if incident is None and len(self.incidents) >= MAX_OPEN:
                self.dropped += 1
                raise DeliveryError(
                    f"{self.name}: {MAX_OPEN} incidents open already, {alert.name} not kept"
                )
            self.incidents[key] = Incident(alert, alert.timestamp)
            return
        incident.alert = alert

    def next_due(self) -> float | None:
        """Monotonic time at which something is next to be posted, ``None`` when nothing."""
        times = [
            (i.sent + self.resend) if i.sent is not None else 0.0 for i in self.incidents.values()
        ]
        if not times:
            return None
        return max(min(times), self.retry_at)

    def due(self, now: float) -> list[str]:
        """The incidents to post at monotonic time ``now``."""
        if now < self.retry_at:
            return []
        return [
            key
            for key, incident in self.incidents.items()
            if incident.sent is None or now - incident.sent >= self.resend
        ]

    def pending(self) -> int:
        """Changes not posted yet (new, resolved)."""
        return sum(1 for incident in self.incidents.values() if incident.sent is None)

    def post_due(self, now: float, epoch: float) -> list[tuple[Alert, bool]]:
        """Post what is due at monotonic time ``now`` (epoch seconds ``epoch``) in one
        request; returns the alerts posted, each with whether it was news (a new incident or
        its resolve) rather than a resend.

        :raises DeliveryError: the post failed (nothing is marked sent).
        """
        keys = self.due(now)
        if not keys:
            return []
        batch = [self.incidents[key] for key in keys]
        body = [self.payload_of(i.alert, i.started, epoch) for i in batch]
        self.post(json.dumps(body).encode())
        self.failures = 0
        posted = []
        for key, incident in zip(keys, batch, strict=True):
            posted.append((incident.alert, incident.sent is None))
            if incident.alert.status == RESOLVED:
                del self.incidents[key]
            else:
                incident.sent = now
        return posted

    def forget_all(self) -> None:
        """A forked child: the parent's incidents are the parent's to tell."""
        self.incidents.clear()
        self.retry_at = 0.0
        self.failures = 0


def build(
    spec: Mapping[str, Any],
    name: str,
    severities: Sequence[str],
    timeout: float,
    policy: UrlPolicy,
) -> AlertmanagerChannel:
    url = spec.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError("needs a 'url' (Alertmanager's, e.g. https://alertmanager:9093)")
    for field in ("headers", "runbooks", "labels"):
        if not isinstance(spec.get(field) or {}, Mapping):
            raise ValueError(f"'{field}' must be an object")
    return AlertmanagerChannel(
        name,
        severities,
        timeout,
        url,
        policy,
        spec.get("headers") or {},
        resend=float(spec.get("resend_seconds", 60.0)),
        runbook_base=str(spec.get("runbook_base") or DEFAULT_RUNBOOK_BASE),
        runbooks={str(k): str(v) for k, v in (spec.get("runbooks") or {}).items()},
        instance=str(spec["instance"]) if spec.get("instance") else None,
        labels={str(k): str(v) for k, v in (spec.get("labels") or {}).items()},
        generator_url=str(spec["generator_url"]) if spec.get("generator_url") else None,
    )


CHANNEL_TYPES["alertmanager"] = build
