"""Live tail: the new lines of an active file as they are written, across rotations.

Like ``tail -F``: the open descriptor is read to its end; when the name points to another
file (rotated: renamed, a new active file created) the old descriptor is drained first and
the new file is read from its start; a file that shrank (truncated) is read again from 0.
Only complete lines are sent; a line still being written waits for its newline.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from .match import Matcher
from .readers import PlainReader, ReadError
from .store import LogStore, NoSuchFile

__all__ = ["Event", "event_id", "follow"]

#: ``(kind, payload, id)``: ``("line", item, id)``, ``("rotated", {"file": name}, None)``,
#: ``("truncated", …)``, ``("keepalive", None, None)``, ``("end", {"reason": …}, None)``.
#: A line's id (``"<dev>-<ino>-<offset after it>"``) is where a reconnecting client resumes.
Event = tuple[str, Any, str | None]


def event_id(identity: tuple[int, int], offset: int) -> str:
    return f"{identity[0]}-{identity[1]}-{offset}"


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def follow(
    store: LogStore,
    name: str,
    matcher: Matcher,
    start: tuple[tuple[int, int], int] | None,
    *,
    stop: threading.Event,
    deadline: float,
    poll: float = 0.25,
    heartbeat: float = 15.0,
) -> Iterator[Event]:
    """Events for the active file ``name`` from ``start`` (``(identity, offset)`` of the
    file a tail ended in; ``None``: from its current end) until ``stop`` is set or
    ``deadline`` (monotonic) passes.
    """
    reader = _open(store, name)
    if reader is None:
        yield "end", {"reason": "the file is gone"}, None
        return
    identity = _identity(os.fstat(reader.fd))
    # From where the tail ended if it is still that file; a file rotated in since: from 0.
    pos = reader.end
    if start is not None:
        pos = start[1] if start[0] == identity else 0
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                yield "end", {"reason": "time limit reached; reconnect to go on"}, None
                return
            new_pos, events = _read_new(reader, pos, matcher, name, identity)
            if new_pos != pos:
                pos = new_pos
                yield from events
                idle_since = now
                continue
            moved = _moved(store, name, identity, pos)
            if moved == "rotated":
                pos, events = _drain(reader, pos, matcher, name, identity)
                yield from events
                fresh = _open(store, name)
                if fresh is not None:
                    reader.close()
                    reader, pos = fresh, 0
                    identity = _identity(os.fstat(reader.fd))
                    yield "rotated", {"file": name}, event_id(identity, 0)
                    continue
            elif moved == "truncated":
                pos = 0
                yield "truncated", {"file": name}, event_id(identity, 0)
                continue
            if now - idle_since >= heartbeat:
                idle_since = now
                yield "keepalive", None, None
            stop.wait(poll)
        yield "end", {"reason": "the server is shutting down"}, None
    finally:
        reader.close()


def _open(store: LogStore, name: str) -> PlainReader | None:
    try:
        reader = store.open(store.resolve(name))
    except (NoSuchFile, ReadError):
        return None
    if not isinstance(reader, PlainReader):  # pragma: no cover - active files are plain
        reader.close()
        return None
    return reader


def _moved(store: LogStore, name: str, identity: tuple[int, int], pos: int) -> str | None:
    try:
        current = store.resolve(name)
        st = os.stat(current.path)
    except (NoSuchFile, OSError):
        return None  # between the rename and the new file: look again at the next poll
    if _identity(st) != identity:
        return "rotated"
    if st.st_size < pos:
        return "truncated"
    return None


def _drain(
    reader: PlainReader, pos: int, matcher: Matcher, name: str, identity: tuple[int, int]
) -> tuple[int, list[Event]]:
    """Everything left in a file that was rotated away."""
    events: list[Event] = []
    while True:
        new_pos, more = _read_new(reader, pos, matcher, name, identity)
        events += more
        if new_pos == pos:
            return pos, events
        pos = new_pos


def _read_new(
    reader: PlainReader, pos: int, matcher: Matcher, name: str, identity: tuple[int, int]
) -> tuple[int, list[Event]]:
    """Complete lines written after ``pos``: the new position and the matching lines."""
    events: list[Event] = []
    try:
        n = reader._pread(reader.windows[0], pos)
    except ReadError:
        return pos, events
    buffer = reader.buffer
    cut = buffer.rfind(b"\n", 0, n) + 1
    if cut == 0 and n == reader.windows[0]:
        cut = n  # a line longer than the window: send it in pieces
    line_start = 0
    while line_start < cut:
        line_end = buffer.find(b"\n", line_start, cut)
        if line_end == -1:
            line_end = cut
        hit = matcher.check(bytes(buffer[line_start:line_end]))
        if hit is not None:
            record, raw = hit
            item: dict[str, Any] = {"file": name, "offset": pos + line_start}
            if record is not None:
                item["record"] = record
            else:
                item["raw"] = raw
            events.append(("line", item, event_id(identity, pos + min(line_end + 1, cut))))
        line_start = line_end + 1
    return pos + cut, events
