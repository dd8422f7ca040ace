"""Keys of the correlation feature: the request ID header, what is accepted, where it goes.

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import boolean, integer, key, opt_boolean, str_tuple, text
from ..context import MAX_REQUEST_ID_LENGTH_LIMIT


def header(value: Any) -> str:
    name = text(value)
    if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
        raise ValueError("expected an HTTP header name")
    return name


def headers(value: Any) -> tuple[str, ...]:
    return tuple(header(v) for v in str_tuple(value))


@dataclass(frozen=True)
class CorrelationSettings:
    """Keys of the correlation feature."""

    correlation_enabled: bool = key(True, boolean)
    #: Header read from requests and echoed on every response.
    request_id_header: str = key("X-Request-ID", header)
    #: Other incoming headers accepted when the main one is absent.
    request_id_fallback_headers: tuple[str, ...] = key(("X-Correlation-ID",), headers)
    #: Accept valid incoming IDs; ``False`` always generates a fresh one.
    request_id_trust_incoming: bool = key(True, boolean)
    request_id_max_length: int = key(128, integer(8, MAX_REQUEST_ID_LENGTH_LIMIT))
    #: Outgoing ``requests`` calls carry the ID only to these hosts (``host``, ``host:port``,
    #: ``*.domain``). Empty: to no host.
    propagate_hosts: tuple[str, ...] = key((), str_tuple)
    #: Celery task headers carry the ID; ``None``: on when Celery is installed.
    celery_enabled: bool | None = key(None, opt_boolean)
