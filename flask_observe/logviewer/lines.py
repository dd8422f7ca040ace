"""One log line: parsing it as a record, its timestamp, its level.

Lines come from :mod:`flask_observe.logging` (one JSON object per line, ``timestamp`` first,
ISO 8601 UTC with milliseconds and ``Z``) or are raw text (a ``print``, a crash dump). Raw
lines are kept as text; they have no timestamp or level.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

__all__ = ["LEVELS", "canonical_time", "level_rank", "line_timestamp", "parse_line"]

#: Level names in increasing severity; aliases map to them.
LEVELS = ("debug", "info", "warning", "error", "critical")
_ALIASES = {"warn": "warning", "fatal": "critical", "exception": "error", "trace": "debug"}
_RANK = {name: i for i, name in enumerate(LEVELS)}

_PREFIX = b'{"timestamp":"'
_PREFIX_LEN = len(_PREFIX)
#: ``2026-11-23T03:14:49.123Z``: the writer's format; such strings compare in time order.
_CANONICAL_LEN = 24


def parse_line(line: bytes) -> dict[str, Any] | None:
    """The JSON object on ``line``, or ``None`` for a raw text line."""
    if not line.startswith(b"{"):
        return None
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def level_rank(level: Any) -> int | None:
    """Position of ``level`` in :data:`LEVELS` (aliases accepted), ``None`` if unknown."""
    if not isinstance(level, str):
        return None
    name = level.lower()
    return _RANK.get(_ALIASES.get(name, name))


def canonical_time(value: Any) -> str | None:
    """``value`` (an ISO 8601 string) as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC, or ``None``.

    Strings in this form compare in time order, so filters compare strings, not datetimes.
    """
    if not isinstance(value, str):
        return None
    if len(value) == _CANONICAL_LEN and value[-1] == "Z" and value[10] == "T":
        return value
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return format_time(moment.timestamp())


def format_time(epoch: float) -> str:
    """``epoch`` seconds in the canonical form."""
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def line_timestamp(line: bytes) -> str | None:
    """The canonical timestamp of ``line`` without parsing all of it when it is ours."""
    if line.startswith(_PREFIX):
        end = _PREFIX_LEN + _CANONICAL_LEN
        if line[end : end + 1] == b'"' and line[end - 1 : end] == b"Z":
            return line[_PREFIX_LEN:end].decode("ascii", "replace")
    record = parse_line(line)
    return canonical_time(record.get("timestamp")) if record is not None else None
