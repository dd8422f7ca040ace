"""Running a search over the log files: bounded work, partial results and a cursor.

A page ends at the first of: ``limit`` results, the response byte cap, the time budget, or
the end of the files. Whenever it ends early it carries a cursor that continues exactly
where it stopped (file, fingerprint, offset), and ``partial`` says whether it stopped for a
bound rather than because it had ``limit`` results. Every page does at least one chunk of
work, so following cursors always finishes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .._clock import SYSTEM, Clock
from .match import Hit, Matcher
from .query import Cursor, Query
from .readers import GzipReader, PlainReader, Reader, ReadError
from .redact import Redactor
from .signing import Signer
from .store import LogFile, LogStore
from .timerange import byte_range, prune

__all__ = ["Limits", "Page", "run_search"]

#: Candidate lines checked between two looks at the clock (a check may run a regex).
_CLOCK_EVERY = 16
#: Planning (picking the rarest needle) is redone on this many first chunks.
_PLAN_CHUNKS = 3


@dataclass(frozen=True)
class Limits:
    """Bounds on one page of results."""

    max_results: int = 1000
    max_response_bytes: int = 4 * 1024 * 1024
    time_budget: float = 2.0
    max_pattern_length: int = 256
    #: A line longer than this is returned as truncated raw text.
    max_line_bytes: int = 256 * 1024


@dataclass
class Page:
    """One page of search results."""

    results: list[dict[str, Any]] = field(default_factory=list)
    cursor: str | None = None
    #: The page stopped at a bound (time budget, response bytes) before ``limit`` results.
    partial: bool = False
    #: ``"limit"``, ``"time_budget"``, ``"response_bytes"``, or ``None`` (end of the files).
    stopped: str | None = None
    scanned_bytes: int = 0
    files: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "results": self.results,
            "cursor": self.cursor,
            "partial": self.partial,
            "stopped": self.stopped,
            "stats": {
                "scanned_bytes": self.scanned_bytes,
                "files": self.files,
                "elapsed_ms": round(self.elapsed_ms, 3),
            },
            "errors": self.errors,
        }


class _Stop(Exception):
    def __init__(self, reason: str, cursor: Cursor) -> None:
        self.reason = reason
        self.cursor = cursor


def run_search(
    store: LogStore,
    query: Query,
    limits: Limits,
    redactor: Redactor | None = None,
    *,
    signer: Signer,
    matcher: Matcher | None = None,
    files: list[LogFile] | None = None,
    clock: Clock = SYSTEM,
) -> Page:
    """One page of ``query`` over ``store``; its cursor is signed by ``signer``; the time
    budget is measured on ``clock``.

    :raises BadName, NoSuchFile: if ``query.file`` is not a readable file.
    :raises QueryError: if a filter cannot be compiled.
    """
    search = _Search(store, query, limits, matcher or Matcher(query, redactor), files, clock)
    return search.run(signer)


class _Search:
    def __init__(
        self,
        store: LogStore,
        query: Query,
        limits: Limits,
        matcher: Matcher,
        files: list[LogFile] | None,
        clock: Clock,
    ) -> None:
        self.store = store
        self.query = query
        self.limits = limits
        self.matcher = matcher
        self.page = Page()
        self.clock = clock
        self.started = clock.monotonic()
        self.deadline = self.started + limits.time_budget
        self.size = 0
        self.checked = 0
        self.planned = 0
        self.files = files

    def run(self, signer: Signer) -> Page:
        page = self.page
        files = self._plan_files()
        index, offset = self._resume(files)
        try:
            for i in range(index, len(files)):
                log_file = files[i]
                if i > index and self.clock.monotonic() > self.deadline:
                    self._stop_before(log_file)
                self._scan_file(log_file, offset if i == index else None)
        except _Stop as stop:
            page.stopped = stop.reason
            page.cursor = stop.cursor.encode(signer)
            page.partial = stop.reason != "limit"
        page.elapsed_ms = (self.clock.monotonic() - self.started) * 1000.0
        return page

    # -- which files, from where ---------------------------------------------------------

    def _plan_files(self) -> list[LogFile]:
        query = self.query
        files = self.files if self.files is not None else self.store.files()
        if query.file is not None:
            wanted = self.store.resolve(query.file)
            files = [f for f in files if f.name == wanted.name]
        files = prune(files, query.since, query.until)
        return files[::-1] if query.newest_first else files

    def _fingerprint(self, log_file: LogFile) -> str | None:
        try:
            with self.store.open(log_file) as reader:
                return reader.fingerprint()
        except ReadError:
            return None

    def _resume(self, files: list[LogFile]) -> tuple[int, int | None]:
        cursor = self.query.cursor
        if cursor is None:
            return 0, None
        offset = cursor.offset if cursor.offset >= 0 else None
        named = [i for i, f in enumerate(files) if f.name == cursor.file]
        others = [i for i in range(len(files)) if i not in named]
        for i in named + others:  # the same content may have been rotated or gzipped
            if self._fingerprint(files[i]) == cursor.fingerprint:
                return i, offset
        # The file has gone (retention): carry on with the files after its place.
        newest_first = self.query.newest_first
        for i, f in enumerate(files):
            if (f.order_key < cursor.key) if newest_first else (f.order_key > cursor.key):
                return i, None
        return len(files), None

    def _cursor(self, log_file: LogFile, reader: Reader | None, offset: int) -> Cursor:
        fingerprint = reader.fingerprint() if reader is not None else self._fingerprint(log_file)
        return Cursor(
            file=log_file.name,
            fingerprint=fingerprint or "",
            offset=offset,
            key=log_file.order_key,
            query=self.query.fingerprint(),
            since=self.query.since,
            until=self.query.until,
        )

    def _stop_before(self, log_file: LogFile) -> None:
        raise _Stop("time_budget", self._cursor(log_file, None, -1))

    # -- scanning ------------------------------------------------------------------------

    def _scan_file(self, log_file: LogFile, offset: int | None) -> None:
        query = self.query
        try:
            with self.store.open(log_file) as reader:
                self.page.files.append(log_file.name)
                try:
                    if isinstance(reader, PlainReader):
                        self._scan_plain(log_file, reader, offset)
                    elif isinstance(reader, GzipReader):
                        if query.newest_first:
                            self._scan_gzip_newest(log_file, reader, offset)
                        else:
                            self._scan(log_file, reader, reader.forward(offset or 0, None), False)
                finally:
                    self.page.scanned_bytes += reader.read_bytes
        except ReadError as exc:
            self.page.errors.append({"file": log_file.name, "error": str(exc)})

    def _scan_plain(self, log_file: LogFile, reader: PlainReader, offset: int | None) -> None:
        query = self.query
        lo, hi = byte_range(reader, query.since, query.until)
        if offset is not None:
            offset = reader.line_start(offset)  # never from inside a line
            if query.newest_first:
                hi = min(hi, offset)
            else:
                lo = max(lo, offset)
        if query.newest_first:
            self._scan(log_file, reader, reader.backward(lo, hi), True)
        else:
            self._scan(log_file, reader, reader.forward(lo, hi), False)

    def _scan(self, log_file: LogFile, reader: Reader, chunks: Any, backward: bool) -> None:
        matcher = self.matcher
        for base, start, end in chunks:
            buffer = reader.buffer
            if self.planned < _PLAN_CHUNKS:
                matcher.plan(buffer, start, end)
                self.planned += 1
            spans = matcher.spans(buffer, reader.view, start, end)
            if backward:
                spans.reverse()
            for line_start, line_end in spans:
                hit = matcher.check(bytes(buffer[line_start:line_end]))
                after = base + line_end + 1 if line_end < end else base + end
                if hit is not None:
                    self._emit(log_file, reader, base + line_start, after, hit, backward)
                self.checked += 1
                if self.checked % _CLOCK_EVERY == 0 and self.clock.monotonic() > self.deadline:
                    position = base + line_start if backward else after
                    raise _Stop("time_budget", self._cursor(log_file, reader, position))
            if self.clock.monotonic() > self.deadline:
                position = base + start if backward else base + end
                raise _Stop("time_budget", self._cursor(log_file, reader, position))

    def _scan_gzip_newest(self, log_file: LogFile, reader: GzipReader, offset: int | None) -> None:
        """Newest first in a gzip file: read it forwards (once started, to its end or the
        cursor) keeping the last ``limit`` matches, then hand them out newest first."""
        room = self.query.limit - len(self.page.results)
        kept: deque[tuple[int, int, Hit]] = deque(maxlen=room)
        matcher = self.matcher
        for base, start, end in reader.forward(0, offset):
            buffer = reader.buffer
            if self.planned < _PLAN_CHUNKS:
                matcher.plan(buffer, start, end)
                self.planned += 1
            for line_start, line_end in matcher.spans(buffer, reader.view, start, end):
                hit = matcher.check(bytes(buffer[line_start:line_end]))
                if hit is not None:
                    after = base + line_end + 1 if line_end < end else base + end
                    kept.append((base + line_start, after, hit))
        for line_start, after, hit in reversed(kept):
            self._emit(log_file, reader, line_start, after, hit, True)

    def _emit(
        self, log_file: LogFile, reader: Reader, start: int, after: int, hit: Hit, backward: bool
    ) -> None:
        record, raw = hit
        item: dict[str, Any] = {"file": log_file.name, "offset": start}
        length = after - start
        if length > self.limits.max_line_bytes:
            text = raw if raw is not None else _dump(record)
            item["raw"] = text[: self.limits.max_line_bytes]
            item["truncated"] = True
            length = self.limits.max_line_bytes
        elif record is not None:
            item["record"] = record
        else:
            item["raw"] = raw
        cost = length + len(log_file.name) + 48
        results = self.page.results
        if results and self.size + cost > self.limits.max_response_bytes:
            position = after if backward else start
            raise _Stop("response_bytes", self._cursor(log_file, reader, position))
        results.append(item)
        self.size += cost
        if len(results) >= self.query.limit:
            raise _Stop("limit", self._cursor(log_file, reader, start if backward else after))


def _dump(record: dict[str, Any] | None) -> str:
    import orjson

    return orjson.dumps(record).decode() if record is not None else ""
