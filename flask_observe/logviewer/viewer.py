"""The log viewer of one app: its files, limits and redaction, used by the HTTP views and
the CLI alike (no Flask in here)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .._clock import SYSTEM, Clock
from .follow import Event, Position, follow, start_position
from .lines import format_time, line_timestamp
from .match import Matcher
from .query import Cursor, Query, QueryError, parse_query
from .readers import PlainReader, ReadError, first_timestamp
from .redact import Redactor
from .search import Limits, Page, run_search
from .signing import Signer
from .store import LogStore

if TYPE_CHECKING:
    from ..logging.settings import LoggingSettings
    from .settings import LogViewerSettings

__all__ = ["LogViewer"]

#: Parameters of a tail besides the filters.
TAIL_FORBIDDEN = ("file", "order", "cursor", "limit")


class Busy(RuntimeError):
    """Too many searches or live tails at once (HTTP 429)."""


@dataclass
class Poll:
    """What a polling tail gets: the new matching lines since its position, the other
    events among them (``{"event": "rotated" | "truncated" | "gap", "at": <index of the next
    line>, …}``), the position to poll from next, and whether there is more already."""

    results: list[dict[str, Any]] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    position: Position | None = None
    more: bool = False


class LogViewer:
    """Lists, searches and tails the log files of one app.

    :param directory: the log directory.
    :param streams: the active file names shown (each with its rotated files).
    :param signer: signs cursors and tail positions (default: a key of this process only).
    :param clock: what time budgets and live tails read.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        streams: tuple[str, ...],
        *,
        limits: Limits | None = None,
        redactor: Redactor | None = None,
        max_concurrent: int = 4,
        max_followers: int = 8,
        follow_seconds: float = 3600.0,
        signer: Signer | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.store = LogStore(directory, streams)
        self.signer = signer or Signer.for_app(None, None)
        self.clock = clock
        #: Seconds between two looks at the files while a live tail is idle.
        self.poll_interval = 0.25
        self.limits = limits or Limits()
        self.redactor = redactor
        self.follow_seconds = follow_seconds
        self.max_followers = max_followers
        self._work = threading.BoundedSemaphore(max_concurrent)
        self._followers = threading.BoundedSemaphore(max_followers) if max_followers else None
        #: Set on shutdown: live tails end.
        self.stopping = threading.Event()

    @classmethod
    def from_config(
        cls, config: LogViewerSettings, logs: LoggingSettings, signer: Signer | None = None
    ) -> LogViewer:
        """The viewer the ``OBSERVE_LOGVIEWER_*`` settings describe (reading the files the
        ``OBSERVE_LOG_*`` settings write unless told otherwise)."""
        directory = config.logviewer_dir or logs.log_dir
        if directory is None:
            raise ValueError("no log directory configured")
        redactor = (
            Redactor(config.logviewer_redact_keys, config.logviewer_redact_patterns)
            if config.logviewer_redact
            else None
        )
        limits = Limits(
            max_results=config.logviewer_max_results,
            max_response_bytes=config.logviewer_max_response_bytes,
            time_budget=config.logviewer_time_budget,
            max_pattern_length=config.logviewer_max_pattern_length,
        )
        return cls(
            Path(directory),
            config.logviewer_files or (logs.log_file_name,),
            limits=limits,
            redactor=redactor,
            max_concurrent=config.logviewer_max_concurrent,
            max_followers=config.logviewer_max_followers,
            follow_seconds=config.logviewer_follow_seconds,
            signer=signer,
        )

    def close(self) -> None:
        self.stopping.set()

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._work.acquire(blocking=False):
            raise Busy("too many log searches at once; try again in a moment")
        try:
            yield
        finally:
            self._work.release()

    def parse(self, args: Mapping[str, list[str]], default_limit: int = 100) -> Query:
        """A query from request arguments; :raises QueryError:."""
        return parse_query(
            args,
            max_results=self.limits.max_results,
            max_pattern_length=self.limits.max_pattern_length,
            signer=self.signer,
            default_limit=default_limit,
        )

    # -- the three operations ------------------------------------------------------------

    def list_files(self) -> list[dict[str, Any]]:
        """Every readable file, newest first, with what is cheap to know about it."""
        out = []
        for f in reversed(self.store.files()):
            entry: dict[str, Any] = {
                "name": f.name,
                "stream": f.stream,
                "size": f.size,
                "modified": format_time(f.mtime),
                "active": f.active,
                "rotated": not f.active,
                "compressed": f.compressed,
                "rotated_at": format_time(f.rotated_at) if f.rotated_at is not None else None,
                "first_timestamp": None,
                "last_timestamp": None,
            }
            with contextlib.suppress(ReadError), self.store.open(f) as reader:
                entry["first_timestamp"] = first_timestamp(reader)
                if isinstance(reader, PlainReader):
                    entry["last_timestamp"] = line_timestamp(reader.tail_line())
            out.append(entry)
        return out

    def search(self, query: Query) -> Page:
        """One page of results; :raises Busy, BadName, NoSuchFile, QueryError:."""
        with self._slot():
            return self._run(query)

    def _run(self, query: Query, files: list[Any] | None = None) -> Page:
        return run_search(
            self.store,
            query,
            self.limits,
            self.redactor,
            signer=self.signer,
            files=files,
            clock=self.clock,
        )

    def tail_query(self, name: str, args: Mapping[str, list[str]], lines: int = 1) -> Query:
        """The filters of a tail of ``name`` from request arguments; :raises QueryError:."""
        for key in TAIL_FORBIDDEN:
            if key in args:
                raise QueryError(f"{key}: not a parameter of a tail")
        return replace(self.parse(args), file=name, limit=max(lines, 1), newest_first=True)

    def tail(
        self, name: str, args: Mapping[str, list[str]], lines: int
    ) -> tuple[Page, Query, Position]:
        """The last ``lines`` matching lines of ``name``, oldest first, and where a live tail
        goes on from: just after them (the page never reaches past that position)."""
        query = self.tail_query(name, args, lines)
        log_file = self.store.resolve(name)
        with self._slot():
            if log_file.active:
                start = start_position(self.store, log_file.stream, self.clock)
            else:  # a rotated file is not followed
                start = Position((), self.clock.time())
            if lines == 0:
                return Page(), query, start
            bounded = query
            mark = next((m for m in start.marks if m.identity == log_file.identity), None)
            if mark is not None and mark.offset >= 0:  # up to where a live tail would start
                cursor = Cursor(
                    file=name,
                    fingerprint=mark.head,
                    offset=mark.offset,
                    key=log_file.order_key,
                    query=query.fingerprint(),
                    since=query.since,
                    until=query.until,
                )
                bounded = replace(query, cursor=cursor)
            page = self._run(bounded, files=[log_file])
        page.results.reverse()
        return page, query, start

    def follow(
        self,
        name: str,
        query: Query,
        start: Position,
        *,
        heartbeat: float = 15.0,
    ) -> Iterator[Event]:
        """Live events for the stream of the active file ``name``; holds a follower slot
        until closed.

        :raises Busy: when ``OBSERVE_LOGVIEWER_MAX_FOLLOWERS`` tails are open already.
        """
        slots = self._followers
        if slots is None or not slots.acquire(blocking=False):
            raise Busy("too many live tails open; close one or try again later")
        try:
            events = follow(
                self.store,
                name,
                Matcher(query, self.redactor),
                start,
                stop=self.stopping,
                deadline=self.clock.monotonic() + self.follow_seconds,
                clock=self.clock,
                poll=self.poll_interval,
                heartbeat=heartbeat,
                max_line_bytes=self.limits.max_line_bytes,
            )
        except BaseException:
            slots.release()
            raise
        return _Held(events, slots)

    def poll(self, name: str, query: Query, position: Position, limit: int) -> Poll:
        """The polling tail: what a live tail from ``position`` would send now, at most
        ``limit`` lines and the response byte cap, within the time budget (no stream held).

        :raises Busy: when ``OBSERVE_LOGVIEWER_MAX_CONCURRENT`` searches are running.
        """
        out = Poll(position=position)
        size = 0
        with self._slot():
            events = follow(
                self.store,
                name,
                Matcher(query, self.redactor),
                position,
                stop=self.stopping,
                deadline=self.clock.monotonic() + self.limits.time_budget,
                clock=self.clock,
                once=True,
                max_line_bytes=self.limits.max_line_bytes,
            )
            try:
                for kind, payload, where in events:
                    if kind == "line":
                        if len(out.results) >= limit or (
                            out.results and size > self.limits.max_response_bytes
                        ):
                            out.more = True
                            break
                        size += len(orjson.dumps(payload))
                        out.results.append(payload)
                    elif kind in ("rotated", "truncated", "gap"):
                        out.notices.append({"event": kind, "at": len(out.results), **payload})
                    if where is not None:
                        out.position = where
                    if kind in ("idle", "end"):
                        out.more = kind == "end"
                        break
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()
        return out


class _Held:
    """An event stream that gives its follower slot back when closed (or collected), even
    if it was never iterated."""

    def __init__(self, events: Iterator[Event], slots: threading.BoundedSemaphore) -> None:
        self._events = events
        self._slots: threading.BoundedSemaphore | None = slots

    def __iter__(self) -> _Held:
        return self

    def __next__(self) -> Event:
        try:
            return next(self._events)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            try:
                self._events.close()  # type: ignore[attr-defined]
            finally:
                slots.release()

    def __del__(self) -> None:
        self.close()
