"""Where alerts go: Slack, Discord, PagerDuty Events API v2, email (SMTP), a JSON webhook.

Each channel sends one alert, synchronously, within its timeout, and raises
:class:`DeliveryError` on failure (``retry_after`` set when the receiver answered 429). The
router calls them from its sender thread, never from a request.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any
from urllib.parse import SplitResult

from .model import RESOLVED, SEVERITIES, Alert
from .urls import UnsafeURLError, UrlPolicy

__all__ = ["Channel", "DeliveryError", "build_channels", "repeats"]

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
_COLORS = {"critical": "#b00020", "error": "#e65100", "warning": "#f9a825", "info": "#1565c0"}
_RESOLVED_COLOR = "#2e7d32"
MAX_RETRY_AFTER = 3600.0


class DeliveryError(Exception):
    """Sending failed; ``retry_after`` (seconds) when the receiver asked us to wait."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Channel:
    """A destination for alerts of some severities.

    :param name: how logs name it (``slack``, ``email-oncall``…), never its URL.
    :param severities: the severities routed to it.
    :param timeout: seconds for one delivery.
    """

    kind = "channel"

    def __init__(self, name: str, severities: Sequence[str], timeout: float) -> None:
        self.name = name
        self.severities = frozenset(severities)
        self.timeout = timeout

    def accepts(self, alert: Alert) -> bool:
        return alert.severity in self.severities

    def send(self, alert: Alert) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def repeats(channel: Channel) -> bool:
    """Whether ``channel``'s receiver dedups and groups by itself (Alertmanager): the router
    gives it every alert and it resends what is still firing."""
    return bool(getattr(channel, "repeats", False))


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to an address checked beforehand, verifying the certificate of the host."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port or 443), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port or 80), self.timeout)


class WebhookChannel(Channel):
    """POSTs the alert as JSON (the generic payload of :meth:`Alert.to_dict`)."""

    kind = "webhook"

    def __init__(
        self,
        name: str,
        severities: Sequence[str],
        timeout: float,
        url: str,
        policy: UrlPolicy,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name, severities, timeout)
        self._policy = policy
        self._url: SplitResult = policy.check_url(url)
        self._headers = dict(headers or {})

    def payload(self, alert: Alert) -> dict[str, Any]:
        return alert.to_dict()

    def send(self, alert: Alert) -> None:
        body = json.dumps(self.payload(alert)).encode()
        self.post(body)

    def post(self, body: bytes) -> None:
        parts = self._url
        host = parts.hostname or ""
        try:
            address = self._policy.resolve(parts)[0]
        except UnsafeURLError as exc:
            raise DeliveryError(str(exc)) from None
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        factory = _PinnedHTTPSConnection if https else _PinnedHTTPConnection
        conn = factory(host, address, port, self.timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "flask-observe-alerts",
            **self._headers,
        }
        if parts.port:
            headers["Host"] = f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"
        deadline = time.monotonic() + self.timeout
        # The socket timeout bounds each read, not the delivery: a receiver answering a byte
        # at a time would hold the sender for minutes. At the deadline, cut the connection.
        watchdog = threading.Timer(self.timeout, _cut, (conn,))
        watchdog.daemon = True
        # At interpreter exit on CPython 3.12.0-3.12.1 no thread may start: the socket
        # timeout still bounds each read, and the exit deadline the whole flush.
        with contextlib.suppress(RuntimeError):
            watchdog.start()
        try:
            conn.request("POST", path, body=body, headers=headers)
            conn.sock.settimeout(max(0.05, deadline - time.monotonic()))
            response = conn.getresponse()
            response.read(64 * 1024)
        except (OSError, http.client.HTTPException) as exc:
            late = " (timed out)" if time.monotonic() >= deadline else ""
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}{late}") from None
        finally:
            watchdog.cancel()
            conn.close()
        status = response.status
        if 200 <= status < 300:
            return
        if status == 429:
            raise DeliveryError(
                f"{self.name}: throttled (429)",
                parse_retry_after(response.getheader("Retry-After")),
            )
        if 300 <= status < 400:
            raise DeliveryError(f"{self.name}: answered a redirect ({status}), not followed")
        raise DeliveryError(f"{self.name}: answered {status}")


def _cut(conn: http.client.HTTPConnection) -> None:
    """Shut the connection's socket down: a read blocked on it returns at once."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def parse_retry_after(value: str | None, default: float = 30.0) -> float:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return default
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return default
        seconds = when - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class SlackChannel(WebhookChannel):
    """Slack incoming webhook: ``text`` plus a colored attachment with the details."""

    kind = "slack"

    def payload(self, alert: Alert) -> dict[str, Any]:
        color = _RESOLVED_COLOR if alert.status == RESOLVED else _COLORS[alert.severity]
        fields = [{"title": k, "value": v, "short": True} for k, v in alert.labels.items()]
        return {
            "text": f"{alert.title}: {alert.summary}",
            "attachments": [
                {
                    "color": color,
                    "title": alert.title,
                    "text": alert.description or alert.summary,
                    "fields": fields,
                    "footer": f"fingerprint {alert.fingerprint}",
                    "ts": int(alert.timestamp),
                }
            ],
        }


class DiscordChannel(WebhookChannel):
    """Discord webhook: ``content`` plus an embed."""

    kind = "discord"

    def payload(self, alert: Alert) -> dict[str, Any]:
        color = _RESOLVED_COLOR if alert.status == RESOLVED else _COLORS[alert.severity]
        return {
            "content": f"{alert.title}: {alert.summary}"[:2000],
            "embeds": [
                {
                    "title": alert.title[:256],
                    "description": (alert.description or alert.summary)[:4096],
                    "color": int(color[1:], 16),
                    "fields": [
                        {"name": k[:256], "value": v[:1024], "inline": True}
                        for k, v in list(alert.labels.items())[:25]
                    ],
                    "footer": {"text": f"fingerprint {alert.fingerprint}"},
                }
            ],
            "allowed_mentions": {"parse": []},
        }


class PagerDutyChannel(WebhookChannel):
    """PagerDuty Events API v2: ``trigger``/``resolve`` with the fingerprint as dedup key."""

    kind = "pagerduty"

    def __init__(self, *args: Any, routing_key: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._routing_key = routing_key

    def payload(self, alert: Alert) -> dict[str, Any]:
        event: dict[str, Any] = {
            "routing_key": self._routing_key,
            "event_action": "resolve" if alert.status == RESOLVED else "trigger",
            "dedup_key": alert.fingerprint,
        }
        if alert.status != RESOLVED:
            event["payload"] = {
                "summary": f"{alert.name}: {alert.summary}"[:1024],
                "source": alert.service or "flask_observe",
                "severity": alert.severity,
                "custom_details": {"description": alert.description, **alert.labels},
            }
        return event


class EmailChannel(Channel):
    """Plain-text email over SMTP (STARTTLS by default, or implicit TLS)."""

    kind = "email"

    def __init__(
        self,
        name: str,
        severities: Sequence[str],
        timeout: float,
        *,
        host: str,
        to: Sequence[str],
        sender: str,
        port: int = 587,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        tls: bool = False,
    ) -> None:
        super().__init__(name, severities, timeout)
        self.host, self.port, self.to, self.sender = host, port, list(to), sender
        self._username, self._password = username, password
        self._starttls, self._tls = starttls, tls

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = f"{alert.title}: {alert.summary}"[:200]
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        lines = [alert.summary, "", alert.description, ""]
        lines += [f"{k}: {v}" for k, v in alert.labels.items()]
        lines += ["", f"status: {alert.status}", f"fingerprint: {alert.fingerprint}"]
        message.set_content("\n".join(lines))
        try:
            smtp_type = smtplib.SMTP_SSL if self._tls else smtplib.SMTP
            with smtp_type(self.host, self.port, timeout=self.timeout) as smtp:
                if self._starttls and not self._tls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from None


_WEBHOOKS: dict[str, type[WebhookChannel]] = {
    "webhook": WebhookChannel,
    "slack": SlackChannel,
    "discord": DiscordChannel,
}


#: The fields each channel type takes (besides ``type``, ``name``, ``severities``, ``timeout``):
#: any other is a typo to refuse (``severity`` for ``severities`` would take every severity).
CHANNEL_FIELDS: dict[str, frozenset[str]] = {
    "webhook": frozenset(("url", "headers")),
    "slack": frozenset(("url", "headers")),
    "discord": frozenset(("url", "headers")),
    "pagerduty": frozenset(("url", "routing_key")),
    "email": frozenset(("host", "port", "to", "from", "username", "password", "starttls", "tls")),
    "alertmanager": frozenset(
        (
            "url",
            "headers",
            "resend_seconds",
            "runbook_base",
            "runbooks",
            "instance",
            "labels",
            "generator_url",
        )
    ),
}
_COMMON_FIELDS = frozenset(("type", "name", "severities", "timeout"))
#: Channel types defined in modules of their own (``alertmanager``): each builds its channel
#: from ``(spec, name, severities, timeout, policy)``; the module registers it when imported
#: (the package imports it).
CHANNEL_TYPES: dict[
    str, Callable[[Mapping[str, Any], str, Sequence[str], float, UrlPolicy], Channel]
] = {}


def build_channels(
    specs: Sequence[Mapping[str, Any]], policy: UrlPolicy, timeout: float
) -> list[Channel]:
    """Channels from ``OBSERVE_ALERT_CHANNELS`` entries.

    :raises ValueError: naming the entry (by position and type, never its URL or key) and the
        problem.
    """
    channels: list[Channel] = []
    for index, spec in enumerate(specs):
        kind = str(spec.get("type", "")).lower()
        label = f"channel {index} ({kind or 'no type'})"
        allowed = CHANNEL_FIELDS.get(kind)
        unknown = sorted(set(spec) - _COMMON_FIELDS - (allowed or frozenset()))
        if allowed is not None and unknown:
            raise ValueError(
                f"{label}: unknown field(s) {', '.join(map(repr, unknown))}; a {kind} channel"
                f" takes {', '.join(sorted(_COMMON_FIELDS | allowed))}"
            )
        name = str(spec.get("name") or f"{kind}-{index}")
        severities = spec.get("severities", SEVERITIES)
        if isinstance(severities, str):
            severities = [s.strip() for s in severities.split(",")]
        if not severities or any(s not in SEVERITIES for s in severities):
            raise ValueError(f"{label}: severities must be among {', '.join(SEVERITIES)}")
        chan_timeout = float(spec.get("timeout", timeout))
        try:
            if kind in _WEBHOOKS or kind == "pagerduty":
                url = spec.get("url") or (PAGERDUTY_URL if kind == "pagerduty" else None)
                if not isinstance(url, str):
                    raise ValueError("needs a 'url'")
                if kind == "pagerduty":
                    key = spec.get("routing_key")
                    if not isinstance(key, str) or not key:
                        raise ValueError("needs a 'routing_key'")
                    channels.append(
                        PagerDutyChannel(
                            name, severities, chan_timeout, url, policy, routing_key=key
                        )
                    )
                else:
                    headers = spec.get("headers") or {}
                    channels.append(
                        _WEBHOOKS[kind](name, severities, chan_timeout, url, policy, headers)
                    )
            elif kind in CHANNEL_TYPES:
                channels.append(CHANNEL_TYPES[kind](spec, name, severities, chan_timeout, policy))
            elif kind == "email":
                to = spec.get("to")
                if isinstance(to, str):
                    to = [to]
                if not spec.get("host") or not to or not spec.get("from"):
                    raise ValueError("needs 'host', 'to' and 'from'")
                channels.append(
                    EmailChannel(
                        name,
                        severities,
                        chan_timeout,
                        host=str(spec["host"]),
                        port=int(spec.get("port", 587)),
                        to=[str(t) for t in to],
                        sender=str(spec["from"]),
                        username=spec.get("username"),
                        password=spec.get("password"),
                        starttls=bool(spec.get("starttls", True)),
                        tls=bool(spec.get("tls", False)),
                    )
                )
            else:
                raise ValueError(
                    "type must be slack, discord, pagerduty, email, webhook or alertmanager"
                )
        except UnsafeURLError as exc:
            raise ValueError(f"{label}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{label}: {exc}") from None
    return channels
