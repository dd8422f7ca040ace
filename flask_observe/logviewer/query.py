"""A search: its filters parsed and checked from request arguments or CLI options, and the
cursor that continues it.

Every problem is a :class:`QueryError` whose message says which parameter and what it
expects (the API answers 400 with it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from ..context import REQUEST_ID_PATTERN
from .lines import LEVELS, canonical_time, format_time, level_rank
from .signing import Signer

__all__ = ["Cursor", "Query", "QueryError", "parse_query", "parse_time"]

PARAMETERS = frozenset(
    {
        "text",
        "regex",
        "ignore_case",
        "level",
        "levels",
        "since",
        "until",
        "file",
        "correlation_id",
        "trace_id",
        "field",
        "limit",
        "order",
        "cursor",
    }
)
DEFAULT_LIMIT = 100
MAX_TEXT = 1024
MAX_FIELDS = 16
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)")
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CORRELATION_ID = re.compile(rf"{REQUEST_ID_PATTERN}{{1,1024}}")
_TRACE_ID = re.compile(r"[0-9a-fA-F]{16,32}")
_FIELD_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_PURPOSE = "cursor"


class QueryError(ValueError):
    """A search parameter is invalid; the message names it."""


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: a file (by name and first-line fingerprint, so a rotated
    or gzipped file is found again) and an offset in it (uncompressed bytes). Oldest first,
    the next page scans from ``offset``; newest first, it scans up to it."""

    file: str
    fingerprint: str
    offset: int
    #: Sort key of the file when the cursor was made; used if the file has gone since.
    key: tuple[int, float, str]
    #: Fingerprint of the filters: a cursor only continues the search that made it.
    query: str
    #: Time bounds resolved on the first page ("15m" must not move while paging).
    since: str | None = None
    until: str | None = None

    def encode(self, signer: Signer) -> str:
        """The cursor as an opaque string, signed (:mod:`.signing`)."""
        data = [
            2,
            self.file,
            self.fingerprint,
            self.offset,
            list(self.key),
            self.query,
            self.since,
            self.until,
        ]
        return signer.dumps(_PURPOSE, data)

    @classmethod
    def decode(cls, text: str, signer: Signer) -> Cursor:
        """:raises QueryError: unless ``text`` is a cursor ``signer`` signed."""
        try:
            version, name, fingerprint, offset, key, query, since, until = signer.loads(
                _PURPOSE, text
            )
            ok = (
                version == 2
                and isinstance(name, str)
                and isinstance(fingerprint, str)
                and isinstance(offset, int)
                and -1 <= offset < 1 << 50
                and isinstance(key, list)
                and len(key) == 3
                and isinstance(query, str)
            )
            if not ok:
                raise ValueError
            since_c = canonical_time(since) if since is not None else None
            until_c = canonical_time(until) if until is not None else None
            return cls(
                name,
                fingerprint,
                offset,
                (int(key[0]), float(key[1]), str(key[2])),
                query,
                since_c,
                until_c,
            )
        except (ValueError, TypeError):  # BadSignature is a ValueError
            raise QueryError(
                "cursor: not a cursor of this log viewer (altered, or signed by another"
                " process: see docs/logviewer.md, 'Cursors and event IDs')"
            ) from None


@dataclass(frozen=True)
class Query:
    """The filters of one search. All given filters must hold for a line to match."""

    text: str | None = None
    regex: str | None = None
    ignore_case: bool = False
    #: Level names allowed (canonical, lower case); ``None``: any line.
    levels: frozenset[str] | None = None
    #: Canonical UTC times: ``since`` inclusive, ``until`` exclusive.
    since: str | None = None
    until: str | None = None
    #: One file's name; ``None``: every file (active and rotated, gzipped too).
    file: str | None = None
    correlation_id: str | None = None
    trace_id: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    limit: int = DEFAULT_LIMIT
    newest_first: bool = True
    cursor: Cursor | None = field(default=None, compare=False)

    @property
    def structured(self) -> bool:
        """Whether a filter needs a JSON record (raw text lines never match then)."""
        return bool(
            self.levels is not None
            or self.since
            or self.until
            or self.correlation_id
            or self.trace_id
            or self.fields
        )

    def fingerprint(self) -> str:
        """Digest of the filters (not the limit, not the time bounds) for cursors."""
        parts = [
            self.text,
            self.regex,
            self.ignore_case,
            sorted(self.levels) if self.levels is not None else None,
            self.file,
            self.correlation_id,
            self.trace_id,
            list(self.fields),
            self.newest_first,
        ]
        return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:16]


def parse_time(value: str, now: float | None = None) -> str:
    """``15m``/``2h``/``1d``/``1w`` ago, or an ISO 8601 date or time (UTC unless it says),
    as a canonical UTC time string.

    :raises ValueError: if it is neither.
    """
    text = value.strip()
    match = _RELATIVE.fullmatch(text)
    if match:
        seconds = float(match[1]) * _UNITS[match[2]]
        if seconds > 100 * 365 * 86400:
            raise ValueError("too far back")
        return format_time((time.time() if now is None else now) - seconds)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            "expected ISO 8601 (2026-11-23T03:14:00Z) or a relative time (30s, 15m, 2h, 1d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return format_time(moment.timestamp())


def _flag(name: str, value: str) -> bool:
    low = value.strip().lower()
    if low in ("", "1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise QueryError(f"{name}: expected true or false")


def _levels(args: Mapping[str, list[str]]) -> frozenset[str] | None:
    minimum, chosen = _one(args, "level"), _one(args, "levels")
    if minimum and chosen:
        raise QueryError("level and levels: give one (a minimum level, or a set of levels)")
    if minimum:
        rank = level_rank(minimum.strip())
        if rank is None:
            raise QueryError(f"level: expected one of {', '.join(LEVELS)}")
        return frozenset(LEVELS[rank:])
    if chosen:
        names = set()
        for part in chosen.split(","):
            rank = level_rank(part.strip())
            if rank is None:
                raise QueryError(f"levels: expected names from {', '.join(LEVELS)}")
            names.add(LEVELS[rank])
        return frozenset(names)
    return None


def _one(args: Mapping[str, list[str]], name: str) -> str | None:
    values = args.get(name) or []
    if len(values) > 1:
        raise QueryError(f"{name}: given more than once")
    return values[0] if values and values[0] != "" else None


def _fields(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not _FIELD_KEY.fullmatch(key.strip()):
            raise QueryError("field: expected key=value, e.g. field=platform=twitter")
        if len(value) > MAX_TEXT:
            raise QueryError(f"field: value longer than {MAX_TEXT} characters")
        out.append((key.strip(), value))
    if len(out) > MAX_FIELDS:
        raise QueryError(f"field: at most {MAX_FIELDS} field filters")
    return tuple(out)


def parse_query(
    args: Mapping[str, list[str]],
    *,
    max_results: int,
    max_pattern_length: int,
    signer: Signer,
    default_limit: int = DEFAULT_LIMIT,
    now: float | None = None,
) -> Query:
    """A :class:`Query` from ``args`` (each parameter's list of values, as from
    ``request.args.to_dict(flat=False)``); a cursor must be one ``signer`` signed.

    :raises QueryError: naming the first invalid parameter.
    """
    unknown = sorted(set(args) - PARAMETERS)
    if unknown:
        known = ", ".join(sorted(PARAMETERS))
        raise QueryError(f"{unknown[0]}: unknown parameter (known: {known})")
    text = _one(args, "text")
    if text is not None and len(text) > MAX_TEXT:
        raise QueryError(f"text: longer than {MAX_TEXT} characters")
    regex = _one(args, "regex")
    if regex is not None and len(regex) > max_pattern_length:
        raise QueryError(f"regex: longer than {max_pattern_length} characters")
    limit_text = _one(args, "limit")
    try:
        limit = int(limit_text) if limit_text is not None else min(default_limit, max_results)
    except ValueError:
        raise QueryError("limit: expected an integer") from None
    if not 1 <= limit <= max_results:
        raise QueryError(f"limit: expected 1 to {max_results}")
    order = (_one(args, "order") or "newest").lower()
    if order not in ("newest", "oldest"):
        raise QueryError("order: expected newest or oldest")
    times: dict[str, str | None] = {}
    for name in ("since", "until"):
        value = _one(args, name)
        try:
            times[name] = parse_time(value, now) if value else None
        except ValueError as exc:
            raise QueryError(f"{name}: {exc}") from None
    correlation_id = _one(args, "correlation_id")
    if correlation_id is not None and not _CORRELATION_ID.fullmatch(correlation_id):
        raise QueryError("correlation_id: not a valid correlation ID")
    trace_id = _one(args, "trace_id")
    if trace_id is not None:
        if not _TRACE_ID.fullmatch(trace_id):
            raise QueryError("trace_id: expected 16 to 32 hexadecimal digits")
        trace_id = trace_id.lower()
    query = Query(
        text=text,
        regex=regex,
        ignore_case=_flag("ignore_case", _one(args, "ignore_case") or "false"),
        levels=_levels(args),
        since=times["since"],
        until=times["until"],
        file=_one(args, "file"),
        correlation_id=correlation_id,
        trace_id=trace_id,
        fields=_fields(args.get("field") or []),
        limit=limit,
        newest_first=order == "newest",
    )
    cursor_text = _one(args, "cursor")
    if cursor_text is None:
        return query
    cursor = Cursor.decode(cursor_text, signer)
    if cursor.query != query.fingerprint():
        raise QueryError("cursor: it continues a different search (the filters changed)")
    return replace(query, cursor=cursor, since=cursor.since, until=cursor.until)


def query_args(values: Mapping[str, Any]) -> dict[str, list[str]]:
    """``args`` for :func:`parse_query` from keyword values (the CLI's options)."""
    out: dict[str, list[str]] = {}
    for key, value in values.items():
        if value is None or value == () or value is False:
            continue
        if isinstance(value, (list, tuple)):
            out[key] = [str(v) for v in value]
        else:
            out[key] = ["true" if value is True else str(value)]
    return out
