"""The log viewer of one app: its files, limits and redaction, used by the HTTP views and
the CLI alike (no Flask in here)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .follow import Event, follow
from .lines import format_time, line_timestamp
from .match import Matcher
from .query import Query, QueryError, parse_query
from .readers import PlainReader, ReadError, first_timestamp
from .redact import Redactor
from .search import Limits, Page, run_search
from .store import LogStore

if TYPE_CHECKING:
    from ..logging.settings import LoggingSettings
    from .settings import LogViewerSettings

__all__ = ["LogViewer"]

#: Parameters of a tail besides the filters.
TAIL_FORBIDDEN = ("file", "order", "cursor", "limit")


class Busy(RuntimeError):
    """Too many searches or live tails at once (HTTP 429)."""


class LogViewer:
    """Lists, searches and tails the log files of one app.

    :param directory: the log directory.
    :param streams: the active file names shown (each with its rotated files).
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
    ) -> None:
        self.store = LogStore(directory, streams)
        self.limits = limits or Limits()
        self.redactor = redactor
        self.follow_seconds = follow_seconds
        self.max_followers = max_followers
        self._work = threading.BoundedSemaphore(max_concurrent)
        self._followers = threading.BoundedSemaphore(max_followers) if max_followers else None
        #: Set on shutdown: live tails end.
        self.stopping = threading.Event()

    @classmethod
    def from_config(cls, config: LogViewerSettings, logs: LoggingSettings) -> LogViewer:
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
            return run_search(self.store, query, self.limits, self.redactor)

    def tail(
        self, name: str, args: Mapping[str, list[str]], lines: int
    ) -> tuple[Page, Query, tuple[tuple[int, int], int] | None]:
        """The last ``lines`` matching lines of ``name``, oldest first, and where a live tail
        should start (the file's identity and the end the tail read up to)."""
        for key in TAIL_FORBIDDEN:
            if key in args:
                raise QueryError(f"{key}: not a parameter of a tail")
        query = replace(self.parse(args), file=name, limit=max(lines, 1), newest_first=True)
        log_file = self.store.resolve(name)
        with self._slot():
            start = None
            with contextlib.suppress(ReadError), self.store.open(log_file) as reader:
                if isinstance(reader, PlainReader):
                    st = os.fstat(reader.fd)
                    start = ((st.st_dev, st.st_ino), reader.end)
            if lines == 0:
                return Page(), query, start
            page = run_search(self.store, query, self.limits, self.redactor, files=[log_file])
        page.results.reverse()
        return page, query, start

    def follow(
        self,
        name: str,
        query: Query,
        start: tuple[tuple[int, int], int] | None,
        *,
        poll: float = 0.25,
        heartbeat: float = 15.0,
    ) -> Iterator[Event]:
        """Live events for the active file ``name``; holds a follower slot until closed.

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
                deadline=time.monotonic() + self.follow_seconds,
                poll=poll,
                heartbeat=heartbeat,
            )
        except BaseException:
            slots.release()
            raise
        return _Held(events, slots)


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
