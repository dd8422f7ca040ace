"""Keys of error capture and reporting (Sentry, docs/errors.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from ..config import boolean, integer, key, number, opt_boolean, opt_text

_DSN = re.compile(r"https?://[^\s/@]+@[^\s/]+/\S+")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def dsn(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _DSN.fullmatch(value.strip()):
        raise ValueError("expected a Sentry DSN (https://<key>@<host>/<project id>)")
    return value.strip()


def opt_level(value: Any) -> str | None:
    """A logging level name, or ``None`` / ``"off"`` for none."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none")):
        return None
    if isinstance(value, str) and value.strip().upper() in _LEVELS:
        return value.strip().upper()
    raise ValueError(f"expected one of {', '.join(_LEVELS)} or 'off'")


def level_number(name: str | None) -> int | None:
    return None if name is None else int(logging.getLevelName(name))


def rate(value: Any) -> float:
    """A share from 0 to 1, both included."""
    result = number(0.0)(value)
    if result > 1.0:
        raise ValueError("expected a number from 0 to 1")
    return result


@dataclass(frozen=True)
class ErrorsSettings:
    """Keys of error capture and reporting (Sentry, docs/errors.md)."""

    #: Log records at or above this level become errors (Sentry events, listeners);
    #: ``off``: none do.
    errors_event_level: str | None = key("ERROR", opt_level)
    #: ``None``: on when ``OBSERVE_SENTRY_DSN`` or ``SENTRY_DSN`` is set.
    sentry_enabled: bool | None = key(None, opt_boolean)
    #: Never logged or shown; ``None`` leaves it to ``SENTRY_DSN``.
    sentry_dsn: str | None = key(None, dsn, secret=True)
    #: Send the client's address (personal data) as the event's user IP.
    sentry_send_client_ip: bool = key(False, boolean)
    #: Keep personal data: the user's e-mail and IP address (``sentry_sdk.set_user``), and
    #: e-mail and IP addresses in messages; implies the client's address.
    sentry_send_pii: bool = key(False, boolean)
    #: Log records from this level up to the event level are breadcrumbs; ``off``: none.
    sentry_breadcrumb_level: str | None = key("INFO", opt_level)
    #: Most breadcrumbs kept per request or task (the newest); 0: none.
    sentry_max_breadcrumbs: int = key(100, integer(0, 1000))
    #: Share of error events sent (Sentry's ``sample_rate``).
    sentry_sample_rate: float = key(1.0, rate)
    #: ``None``: ``OBSERVE_ENVIRONMENT``, else ``SENTRY_ENVIRONMENT``.
    sentry_environment: str | None = key(None, opt_text)
    #: ``None``: ``<service>@<OBSERVE_SERVICE_VERSION>``, else ``SENTRY_RELEASE``.
    sentry_release: str | None = key(None, opt_text)
    #: ``None``: the machine's host name.
    sentry_server_name: str | None = key(None, opt_text)
    #: Longest wait for queued events at shutdown and process exit, in seconds.
    sentry_shutdown_timeout: float = key(2.0, number(0.0))
