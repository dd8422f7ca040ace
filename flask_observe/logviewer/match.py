"""Whether a line matches a query, and how candidate lines are found without a Python loop.

A scan never looks at every line when it can help it. Each filter that implies a literal in
the line (a correlation ID, a trace ID, a field's value, the text, a rare level) is a
*needle group*; the scan runs ``bytes.find`` for the rarest group (estimated on the first
chunks) over each chunk, and only the lines around its hits are checked in Python. With no
literal, a regular expression is run by RE2 over the whole chunk (linear time, releases
the GIL); with neither, every line is a candidate. Candidate lines then go through
:meth:`Matcher.check`, which applies every filter exactly.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from .. import _optional
from .lines import LEVELS, level_rank, line_timestamp, parse_line
from .query import Query, QueryError
from .redact import Redactor

__all__ = ["Hit", "Matcher"]

#: ``(record, raw)``: the parsed JSON record, or the text of a raw line.
Hit = tuple[dict[str, Any] | None, str | None]
Spans = list[tuple[int, int]]

_SAMPLE = 512 * 1024
#: A needle group with fewer than one hit per this many bytes is scanned with RE2 ...
_SPARSE_BYTES = 4096
#: ... unless it is one needle at least this long.
_LONG_NEEDLE = 16
#: A set of more levels than this is too common for its needles to help.
_MAX_LEVEL_NEEDLES = 3
_OURS = b'{"timestamp":"'
_LEVEL_AT = 40  # our lines: {"timestamp":"<24 chars>","level":"…


def compile_regex(pattern: str, ignore_case: bool, *, literal: bool = False) -> Any:
    """An RE2 pattern, multi-line, for ``bytes``; :raises QueryError: if RE2 refuses it."""
    re2 = _optional.require("re2", "logviewer", "Regular-expression log search")
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 32 << 20
    # Only "does it match" is asked: without captures RE2 answers with its DFA, where
    # submatch tracking on a large program (``(.*){1,1000}``) costs milliseconds per line.
    options.never_capture = True
    if literal:
        pattern = re2.escape(pattern)
    flags = "(?mi)" if ignore_case else "(?m)"
    try:
        return re2.compile(flags + pattern, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "invalid"
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise QueryError(f"regex: {detail} (RE2 syntax: no backreferences or lookaround)") from None


@functools.lru_cache(maxsize=64)
def _literal_regex(needles: tuple[bytes, ...]) -> Any:
    """RE2 finding any of ``needles``, or ``None`` without RE2 (``bytes.find`` then)."""
    re2 = _optional.detect("re2", "RE2 literal scanning")
    if re2 is None:
        return None
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True
    return re2.compile(b"|".join(re2.escape(n) for n in needles), options)


def _json_text(value: str) -> bytes:
    """How ``value`` appears inside a JSON string written by orjson (no quotes)."""
    return orjson.dumps(value)[1:-1]


class Matcher:
    """Applies one query's filters to lines.

    :param query: the filters.
    :param redactor: hides secrets in what is returned; a match is re-checked after
        redaction, so a hidden value cannot be found by searching for it.
    """

    def __init__(self, query: Query, redactor: Redactor | None = None) -> None:
        self.query = query
        self.redactor = redactor
        self.text: bytes | None = None
        self.text_regex: Any = None
        if query.text is not None:
            if query.ignore_case:
                self.text_regex = compile_regex(query.text, True, literal=True)
            else:
                self.text = query.text.encode()
        self.regex = compile_regex(query.regex, query.ignore_case) if query.regex else None
        self.levels = query.levels
        self.fields = query.fields
        groups: list[tuple[bytes, ...]] = []
        if query.correlation_id:
            groups.append((query.correlation_id.encode(),))
        if query.trace_id:
            groups.append((query.trace_id.encode(),))
        if self.text:
            groups.append((self.text,))
        groups += [(_json_text(value),) for _, value in query.fields if value]
        #: Literals every matching line contains (checked before parsing).
        self.required = [g[0] for g in groups]
        if self.levels is not None and len(self.levels) <= _MAX_LEVEL_NEEDLES:
            groups.append(tuple(b'level":"' + name.encode() for name in sorted(self.levels)))
        self.groups = groups
        self.primary: tuple[bytes, ...] | None = groups[0] if groups else None
        #: RE2 over the needles of a sparse primary group: faster than ``bytes.find`` on
        #: short or common-letter needles, and it releases the GIL while it scans.
        self.primary_regex: Any = None
        self._scan_regex = self.text_regex or self.regex

    # -- finding candidates -------------------------------------------------------------

    def plan(self, buffer: bytearray, start: int, end: int) -> None:
        """Pick the rarest needle group, estimated on ``buffer[start:end]``, and how to find
        it: RE2 when its hits are sparse, ``bytes.find`` when they are dense (RE2 costs more
        per hit through its Python wrapper)."""
        if not self.groups:
            return
        stop = min(end, start + _SAMPLE)
        counts = [sum(buffer.count(n, start, stop) for n in group) for group in self.groups]
        best = counts.index(min(counts))
        self.primary = self.groups[best]
        sparse = counts[best] * _SPARSE_BYTES < max(stop - start, 1)
        # A long single needle is where bytes.find's skipping shines (a UUID: ~20 % faster
        # than RE2); short needles and sets of needles go to RE2 (``locked``: 4x faster).
        short = len(self.primary) > 1 or len(self.primary[0]) < _LONG_NEEDLE
        self.primary_regex = _literal_regex(self.primary) if sparse and short else None

    def spans(self, buffer: bytearray, view: memoryview, start: int, end: int) -> Spans:
        """``(line start, line end)`` of the candidate lines in ``buffer[start:end]``."""
        if self.primary_regex is not None:
            return _regex_spans(self.primary_regex, buffer, view, start, end)
        if self.primary is not None:
            if len(self.primary) == 1:
                return _needle_spans(buffer, self.primary[0], start, end)
            return _any_needle_spans(buffer, self.primary, start, end)
        if self._scan_regex is not None:
            return _regex_spans(self._scan_regex, buffer, view, start, end)
        return _line_spans(buffer, start, end)

    # -- checking one line ---------------------------------------------------------------

    def check(self, line: bytes) -> Hit | None:
        """``(record, raw)`` if ``line`` matches every filter, else ``None``."""
        if not self._literal_ok(line):
            return None
        query = self.query
        levels = self.levels
        if (
            levels is not None
            and line.startswith(_OURS)
            and line[_LEVEL_AT : _LEVEL_AT + 9] == (b'"level":"')
        ):
            stop = line.find(b'"', _LEVEL_AT + 9, _LEVEL_AT + 40)
            if stop != -1:
                rank = level_rank(line[_LEVEL_AT + 9 : stop].decode("ascii", "replace"))
                if rank is None or LEVELS[rank] not in levels:
                    return None
        if query.since or query.until:
            stamp = line_timestamp(line)
            if not self._time_ok(stamp):
                return None
        record = parse_line(line)
        if query.structured and (record is None or not self._record_ok(record)):
            return None
        raw = None if record is not None else line.decode("utf-8", "replace")
        if self.redactor is None:
            return record, raw
        if record is not None:
            redacted, changed = self.redactor.record(record)
            if changed and not self._still_matches(orjson.dumps(redacted), redacted):
                return None
            return redacted, None
        hidden = self.redactor.line(raw or "")
        if hidden != raw and not self._still_matches(hidden.encode(), None):
            return None
        return None, hidden

    def _literal_ok(self, line: bytes) -> bool:
        for needle in self.required:
            if needle not in line:
                return False
        if self.text_regex is not None and self.text_regex.search(line) is None:
            return False
        return self.regex is None or self.regex.search(line) is not None

    def _time_ok(self, stamp: str | None) -> bool:
        if stamp is None:
            return False
        query = self.query
        return not (query.since and stamp < query.since) and not (
            query.until and stamp >= query.until
        )

    def _record_ok(self, record: dict[str, Any]) -> bool:
        query = self.query
        if self.levels is not None:
            rank = level_rank(record.get("level"))
            if rank is None or LEVELS[rank] not in self.levels:
                return False
        if query.correlation_id and record.get("correlation_id") != query.correlation_id:
            return False
        if query.trace_id:
            trace = record.get("trace_id")
            if not isinstance(trace, str) or trace.lower() != query.trace_id:
                return False
        return all(field_equals(record, key, value) for key, value in self.fields)

    def _still_matches(self, text: bytes, record: dict[str, Any] | None) -> bool:
        """After redaction, every filter must still hold on what is shown."""
        return self._literal_ok(text) and (record is None or self._record_ok(record))


def field_equals(record: dict[str, Any], key: str, want: str) -> bool:
    """``record[key] == want``: strings exactly, other values by their JSON text
    (``status=500``, ``cached=true``, ``user=null``). A dotted key also finds a nested field."""
    if key in record:
        value = record[key]
    else:
        value = record
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                return False
            value = value[part]
    if isinstance(value, str):
        return value == want
    try:
        return orjson.dumps(value).decode() == want
    except TypeError:
        return False


def _needle_spans(buffer: bytearray, needle: bytes, start: int, end: int) -> Spans:
    out: Spans = []
    find, rfind = buffer.find, buffer.rfind
    i = find(needle, start, end)
    while i != -1:
        line_start = rfind(b"\n", start, i) + 1 or start
        line_end = find(b"\n", i, end)
        if line_end == -1:
            out.append((line_start, end))
            break
        out.append((line_start, line_end))
        i = find(needle, line_end + 1, end)
    return out


def _any_needle_spans(buffer: bytearray, needles: tuple[bytes, ...], start: int, end: int) -> Spans:
    out: Spans = []
    find = buffer.find
    next_at = [find(n, start, end) for n in needles]
    while True:
        live = [p for p in next_at if p != -1]
        if not live:
            return out
        i = min(live)
        line_start = buffer.rfind(b"\n", start, i) + 1 or start
        line_end = find(b"\n", i, end)
        if line_end == -1:
            out.append((line_start, end))
            return out
        out.append((line_start, line_end))
        next_at = [
            find(n, line_end + 1, end) if p != -1 and p <= line_end else p
            for n, p in zip(needles, next_at, strict=True)
        ]


def _regex_spans(regex: Any, buffer: bytearray, view: memoryview, start: int, end: int) -> Spans:
    out: Spans = []
    text = view[:end]  # so that ``$`` matches at the end of the chunk
    find = buffer.find
    match = regex.search(text, start, end)
    while match is not None:
        i = match.start()
        line_start = buffer.rfind(b"\n", start, i) + 1 or start
        line_end = find(b"\n", i, end)
        if line_end == -1:
            out.append((line_start, end))
            break
        out.append((line_start, line_end))
        match = regex.search(text, line_end + 1, end) if line_end + 1 < end else None
    text.release()
    return out


def _line_spans(buffer: bytearray, start: int, end: int) -> Spans:
    out: Spans = []
    find = buffer.find
    pos = start
    while pos < end:
        line_end = find(b"\n", pos, end)
        if line_end == -1:
            out.append((pos, end))
            break
        out.append((pos, line_end))
        pos = line_end + 1
    return out
