"""Keys of error reporting (Sentry, docs/errors.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import boolean, key, number, opt_boolean

_DSN = re.compile(r"https?://[^\s/@]+@[^\s/]+/\S+")


def dsn(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _DSN.fullmatch(value.strip()):
        raise ValueError("expected a Sentry DSN (https://<key>@<host>/<project id>)")
    return value.strip()


@dataclass(frozen=True)
class ErrorsSettings:
    """Keys of error reporting (Sentry, docs/errors.md)."""

    #: ``None``: on when ``OBSERVE_SENTRY_DSN`` or ``SENTRY_DSN`` is set.
    sentry_enabled: bool | None = key(None, opt_boolean)
    #: Never logged or shown; ``None`` leaves it to ``SENTRY_DSN``.
    sentry_dsn: str | None = key(None, dsn, secret=True)
    #: Send the client's address (personal data) as the event's user IP.
    sentry_send_client_ip: bool = key(False, boolean)
    #: Longest wait for queued events at shutdown and process exit, in seconds.
    sentry_shutdown_timeout: float = key(2.0, number(0.0))
