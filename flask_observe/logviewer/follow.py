"""Live tail: the new lines of a stream — its active file and the files rotated from it — as
they are written, each line once, across any number of rotations.

Files are followed by inode, not by name. Several processes share the active file (gunicorn
workers), and each notices a rotation only at its next check (within a second): for that
second the file just rotated away still grows while its successor does too, and with fast
rotation a file can be rotated again, even compressed, before a reader has opened it. So the
follower keeps every file of the stream that may still grow open and reads each to its end
on every pass, oldest first:

1. **look** at the directory (:meth:`~.store.LogStore.files`: only the log's own files): a
   file not seen before (a new active file, a rotated one never seen as active, one already
   compressed) is opened and read from its start; known files are recognised by inode under
   their new name;
2. **read** each open file's new complete lines (a line being written waits for its
   newline), filter and redact them;
3. **retire** a rotated file once it is read to its end and either gone from the directory
   (compressed or deleted: the open descriptor still reads all of it) or quiet for
   :data:`~flask_observe.logging.files.QUIET_SECONDS` (every writer has moved on).

A line is lost only when its file is deleted before the follower ever opened it — a file
listed that vanished before it could be opened, or a resumed position whose file retention
deleted since. Then a ``gap`` event says which file and how many bytes, where known.

Where a tail is, is a :class:`~.positions.Position` (each followed file's inode, offset and
first-line fingerprint); a tail resumed from one goes on in those files, moved to line starts.
Waiting and time limits read a :class:`~flask_observe._clock.Clock`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .._clock import SYSTEM, Clock
from ..logging.files import QUIET_SECONDS
from .match import Matcher
from .positions import (
    MAX_MARKS,
    SLACK_SECONDS,
    Mark,
    Position,
    fingerprint,
    head_of,
    start_position,
)
from .readers import GzipReader, LogFile, PlainReader, Reader, ReadError
from .store import LogStore

__all__ = ["Event", "Mark", "Position", "follow", "start_position"]

#: ``(kind, payload, position)``: ``("line", item, p)``, ``("rotated", {"file": name}, p)``,
#: ``("truncated", …, p)``, ``("gap", {"file", "bytes", "reason"}, p)``, ``("idle", None,
#: p)`` (a polling tail caught up), ``("keepalive", None, None)``, ``("end", {"reason": …},
#: None)``. ``p`` is where a reconnecting client resumes: just after this event.
Event = tuple[str, Any, "Position | None"]

#: A pass reads at most this much of one file before looking at the others again.
_PASS_BYTES = 1024 * 1024


class _File:
    """One followed file: its open reader and how far it has been read."""

    def __init__(self, reader: Reader, entry: LogFile, offset: int) -> None:
        self.reader = reader
        self.identity = entry.identity
        self.compressed = isinstance(reader, GzipReader)
        self.offset = offset
        self.head = reader.fingerprint() if self.compressed else head_of(reader.fd)
        self.chunks: Iterator[tuple[int, int, int]] | None = None
        self.drained = False
        self.exhausted = False
        #: Files are born as the active file, one after the other: one first seen in a later
        #: look is newer; files first seen together are ordered by their names' times.
        self.seen = 0
        self.update(entry)

    @property
    def rank(self) -> tuple[int, tuple[int, float, str]]:
        return self.seen, self.key

    def update(self, entry: LogFile) -> None:
        self.name = entry.name
        self.key = entry.order_key
        self.stamp = entry.rotated_at


class _Follower:
    def __init__(
        self,
        store: LogStore,
        stream: str,
        matcher: Matcher,
        clock: Clock,
        max_line_bytes: int,
    ) -> None:
        self.store = store
        self.stream = stream
        self.matcher = matcher
        self.clock = clock
        self.max_line_bytes = max_line_bytes
        self.files: dict[tuple[int, int], _File] = {}
        #: Files read to their end (or old), kept as marks until behind the horizon.
        self.finished: dict[tuple[int, int], Mark] = {}
        #: Names (plain and ``.gz``) and first-line fingerprints of files not to read.
        self.skip: set[str] = set()
        self.heads: set[str] = set()
        self._gzip_heads: dict[tuple[int, int], str] = {}
        self.active: tuple[int, int] | None = None
        self.horizon = 0.0
        self.progressed = False
        self.looks = 0

    # -- where it is ---------------------------------------------------------------------

    def position(self) -> Position:
        self.horizon = max(self.horizon, self.clock.time() - SLACK_SECONDS)
        for identity, mark in list(self.finished.items()):
            if mark.stamp is None or mark.stamp <= self.horizon:
                del self.finished[identity]
        marks = [Mark(f.identity, f.offset, f.head, f.stamp) for f in self.files.values()]
        return Position(tuple(marks[:MAX_MARKS]) + tuple(self.finished.values()), self.horizon)

    def resume(self, start: Position) -> Iterator[Event]:
        """Open the files of ``start`` where it left them, and every file new since."""
        self.horizon = start.horizon
        listing = self.store.files(self.stream)
        by_identity = {entry.identity: entry for entry in listing}
        compressed = [entry for entry in listing if entry.compressed]
        matched: set[tuple[int, int]] = set()
        lost = []
        for mark in start.marks:
            entry = by_identity.get(mark.identity)
            if entry is not None and mark.head and self._head_of(entry) not in (mark.head, ""):
                entry = None  # the inode was freed and taken by another file since
            if entry is None and mark.head:
                entry = next((e for e in compressed if self._gziphead_of(e) == mark.head), None)
            if entry is None:
                if mark.offset > 0:
                    lost.append(mark)
                continue
            matched.add(entry.identity)
            if mark.head:
                self.heads.add(mark.head)
            if mark.offset == -1:
                self._skip(entry)
                self.finished[entry.identity] = mark
            elif not self._track(entry, mark.offset):
                lost.append(mark)
            if entry.active:
                self.active = entry.identity
        for entry in listing:
            if entry.identity in matched:
                continue
            new = entry.active or (entry.rotated_at or 0.0) > start.horizon
            if new and entry.compressed and self._is_known_gzip(entry):
                new = False  # a file of the position, compressed since
            if new:
                self._track(entry, 0)  # new since the position was made
                if entry.active:
                    self.active = entry.identity
            else:
                self._skip(entry)
        for _ in lost:
            yield self._gap(None, None, "a file this tail was reading is gone (retention?)")

    # -- one pass ------------------------------------------------------------------------

    def step(self) -> Iterator[Event]:
        """Look, read, retire; :attr:`progressed` says whether any byte was read."""
        self.progressed = False
        yield from self._look()
        for f in sorted(self.files.values(), key=lambda f: f.rank):
            yield from self._read(f, final=False)
        if self.active is None:
            return  # between a rename and the new file (or a file refused for a moment):
            # nothing is let go until the active file is known again
        for f in list(self.files.values()):
            if f.identity == self.active:
                continue
            if f.compressed:
                if f.exhausted:
                    self._finish(f)
                continue
            try:
                st = os.fstat(f.reader.fd)
            except OSError:  # pragma: no cover - our own open descriptor
                continue
            # No name left (compressed, or deleted): nobody can open it to write any more.
            # Still named: let go once every writer has moved on (quiet).
            gone = st.st_nlink == 0
            if gone or (f.drained and self.clock.time() - st.st_mtime >= QUIET_SECONDS):
                yield from self._read(f, final=True)
                if f.drained:
                    self._finish(f)

    def _look(self) -> Iterator[Event]:
        self.looks += 1
        listing = self.store.files(self.stream)
        for f in self.files.values():
            if not f.head and not f.compressed:
                f.head = head_of(f.reader.fd)  # before judging a .gz by its first line
        previous = self.active
        self.active = None
        for entry in listing:
            if entry.active:
                self.active = entry.identity
            known = self.files.get(entry.identity)
            if known is not None:
                if known.offset > entry.size and entry.active and not known.compressed:
                    known.offset = 0  # truncated in place: read it again from its start
                    yield "truncated", {"file": self.stream}, self.position()
                known.update(entry)
                continue
            if entry.name in self.skip:  # finished (by name: inodes are reused) or old
                continue
            if entry.compressed and self._is_known_gzip(entry):
                self._skip(entry)
                continue
            if not self._track(entry, 0):
                # Gone with no .gz made of it (gzip writes the .gz before removing the
                # file): deleted unread. The active name is only ever renamed away.
                compressed = entry.path.with_name(entry.name + ".gz")
                if not (entry.active or entry.path.exists() or compressed.exists()):
                    yield self._gap(entry.name, entry.size, "deleted before it could be read")
                continue
            if entry.active and previous is not None:
                yield "rotated", {"file": self.stream}, self.position()

    def _is_known_gzip(self, entry: LogFile) -> bool:
        """Whether a ``.gz`` is a file already followed (or finished), compressed since."""
        plain = entry.name[: -len(".gz")]
        if plain in self.skip or any(f.name == plain for f in self.files.values()):
            return True
        head = self._gziphead_of(entry)
        followed = any(f.head == head for f in self.files.values())
        return bool(head) and (head in self.heads or followed)

    # -- reading -------------------------------------------------------------------------

    def _read(self, f: _File, final: bool) -> Iterator[Event]:
        if f.compressed:
            yield from self._read_gzip(f)
            return
        reader = f.reader
        assert isinstance(reader, PlainReader)
        budget, k = _PASS_BYTES, 0
        f.drained = False
        while budget > 0:
            want = reader.window(k)
            try:
                n = reader._pread(want, f.offset)
            except ReadError:
                f.drained = True
                return
            if n <= 0:
                f.drained = True
                return
            buffer = reader.buffer
            cut = buffer.rfind(b"\n", 0, n) + 1
            if cut == 0:
                if n == want and want < reader.windows[-1]:
                    k += 1
                    continue  # no whole line yet: read again, more
                if n < want and not final:
                    f.drained = True
                    return  # a line still being written: wait for its newline
                cut = n  # a piece of a line longer than the largest window, or a last line
            self.progressed = True
            yield from self._lines(f, buffer, f.offset, 0, cut)
            budget -= cut
            if n < want:
                f.drained = cut == n
                return

    def _read_gzip(self, f: _File) -> Iterator[Event]:
        reader = f.reader
        if f.chunks is None:
            f.chunks = reader.forward(f.offset, None)
        budget = _PASS_BYTES
        try:
            while budget > 0:
                chunk = next(f.chunks, None)
                if chunk is None:
                    f.drained = f.exhausted = True
                    return
                base, start, end = chunk
                self.progressed = True
                yield from self._lines(f, reader.buffer, base, start, end)
                budget -= end - start
        except ReadError as exc:
            f.drained = f.exhausted = True
            yield self._gap(f.name, None, f"unreadable: {exc}")

    def _lines(
        self, f: _File, buffer: bytearray, base: int, start: int, end: int
    ) -> Iterator[Event]:
        """The matching lines of ``buffer[start:end]`` (file offset ``base`` at 0)."""
        check = self.matcher.check
        while start < end:
            stop = buffer.find(b"\n", start, end)
            if stop == -1:
                stop = end
            line = bytes(buffer[start:stop])
            offset = base + start
            f.offset = base + min(stop + 1, end)
            if offset == 0 and not f.head and stop < end:
                f.head = fingerprint(line + b"\n") if len(line) < 4096 else ""
            start = stop + 1
            hit = check(line)
            if hit is None:
                continue
            record, raw = hit
            item: dict[str, Any] = {"file": f.name, "offset": offset}
            if len(line) > self.max_line_bytes:
                text = raw if raw is not None else _dump(record)
                item["raw"] = text[: self.max_line_bytes]
                item["truncated"] = True
            elif record is not None:
                item["record"] = record
            else:
                item["raw"] = raw
            yield "line", item, self.position()

    # -- files ---------------------------------------------------------------------------

    def _track(self, entry: LogFile, offset: int) -> bool:
        """Open ``entry`` and follow it from ``offset`` (moved to a line start)."""
        try:
            reader = self.store.open(entry)
        except ReadError:
            return False
        try:
            st = os.fstat(reader.fd)
            if (st.st_dev, st.st_ino) != entry.identity:
                raise ReadError("replaced since it was listed")
            if isinstance(reader, PlainReader):
                offset = reader.line_start(offset)
        except (OSError, ReadError):
            reader.close()
            return False
        followed = self.files[entry.identity] = _File(reader, entry, offset)
        followed.seen = self.looks
        return True

    def _finish(self, f: _File) -> None:
        f.reader.close()
        del self.files[f.identity]
        if f.name != self.stream:
            self.skip.update((f.name, f.name + ".gz"))
        if f.head:
            self.heads.add(f.head)
        stamp = f.stamp if f.stamp is not None else self.clock.time()
        self.finished[f.identity] = Mark(f.identity, -1, f.head, stamp)

    def _skip(self, entry: LogFile) -> None:
        if entry.active:
            return  # the active name is never skipped: each new file there is followed
        self.skip.add(entry.name)
        if not entry.compressed:
            self.skip.add(entry.name + ".gz")

    def _head_of(self, entry: LogFile) -> str:
        if entry.compressed:
            return self._gziphead_of(entry)
        try:
            with self.store.open(entry) as reader:
                return head_of(reader.fd)
        except ReadError:
            return ""

    def _gziphead_of(self, entry: LogFile) -> str:
        head = self._gzip_heads.get(entry.identity)
        if head is None:
            try:
                with self.store.open(entry) as reader:
                    head = reader.fingerprint()
            except ReadError:
                head = ""
            self._gzip_heads[entry.identity] = head
        return head

    def _gap(self, name: str | None, size: int | None, reason: str) -> Event:
        return "gap", {"file": name, "bytes": size, "reason": reason}, self.position()

    def close(self) -> None:
        for f in self.files.values():
            f.reader.close()
        self.files.clear()


def _dump(record: dict[str, Any] | None) -> str:
    import orjson

    return orjson.dumps(record).decode() if record is not None else ""


def follow(
    store: LogStore,
    name: str,
    matcher: Matcher,
    start: Position,
    *,
    stop: threading.Event,
    deadline: float,
    clock: Clock = SYSTEM,
    wait: Callable[[float], object] | None = None,
    poll: float = 0.25,
    heartbeat: float = 15.0,
    once: bool = False,
    max_line_bytes: int = 256 * 1024,
) -> Iterator[Event]:
    """Events for the stream of the active file ``name`` from ``start`` until ``stop`` is
    set or ``deadline`` (``clock.monotonic()``) passes; with ``once``, until it has caught
    up (its last event is ``idle``, with the position to poll from next).

    :param wait: sleeps between passes (default ``stop.wait``; tests move a clock instead).
    """
    sleep = wait if wait is not None else stop.wait
    follower = _Follower(store, name, matcher, clock, max_line_bytes)
    try:
        yield from follower.resume(start)
        idle_since = clock.monotonic()
        while not stop.is_set():
            now = clock.monotonic()
            if now >= deadline:
                reason = "time limit reached; reconnect to go on"
                yield "end", {"reason": reason}, follower.position()
                return
            yield from follower.step()
            if follower.progressed:
                idle_since = now
                continue
            if once:
                yield "idle", None, follower.position()
                return
            if now - idle_since >= heartbeat:
                idle_since = now
                yield "keepalive", None, None
            sleep(poll)
        yield "end", {"reason": "the server is shutting down"}, None
    finally:
        follower.close()
