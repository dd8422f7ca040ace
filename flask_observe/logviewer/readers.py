"""Reading one log file in chunks of whole lines: plain files with ``pread`` into one
reused buffer (never whole, never memory-mapped: a file truncated under a mapping raises
SIGBUS and would kill the host), gzip files as a stream.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lines import line_timestamp

__all__ = [
    "Chunk",
    "GzipReader",
    "LogFile",
    "PlainReader",
    "ReadError",
    "Reader",
    "first_timestamp",
]

_HEAD = 4096


@dataclass(frozen=True)
class LogFile:
    """One readable file. ``path`` is canonical."""

    name: str
    path: Path
    stream: str
    active: bool
    compressed: bool
    size: int
    mtime: float
    rotated_at: float | None
    #: ``(st_dev, st_ino)`` when listed: the file itself, whatever it is called later.
    identity: tuple[int, int] = (0, 0)

    @property
    def order_key(self) -> tuple[int, float, str]:
        """Files sort oldest first: rotated ones by rotation time, then the active ones."""
        when = self.mtime if self.active else (self.rotated_at or self.mtime)
        return (1 if self.active else 0, when, self.name)


class ReadError(OSError):
    """A file could not be read (vanished, corrupt gzip); the search reports and goes on."""


#: A chunk of whole lines: ``buffer[start:end]`` holds the file's bytes from ``base + start``.
Chunk = tuple[int, int, int]


class Reader:
    """Reads one file in chunks of whole lines into a shared buffer."""

    def __init__(self, fd: int, log_file: LogFile, windows: tuple[int, ...]) -> None:
        self.fd = fd
        self.file = log_file
        self.windows = windows
        self.buffer = bytearray(windows[0])
        self.view = memoryview(self.buffer)
        #: Bytes read so far (uncompressed), for the response's statistics.
        self.read_bytes = 0

    def _room(self, size: int, keep: int = 0) -> None:
        """Grow the buffer to ``size`` bytes (it starts small: a tail needs 64 KiB)."""
        if len(self.buffer) < size:
            bigger = bytearray(size)
            bigger[:keep] = self.buffer[:keep]
            self.view.release()
            self.buffer, self.view = bigger, memoryview(bigger)

    def close(self) -> None:
        self.view.release()
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def end(self) -> int | None:
        """End of the last complete line (``None`` for a gzip file: unknown until read)."""
        return None

    def forward(self, start: int, end: int | None) -> Iterator[Chunk]:
        """Chunks covering ``[start, end)``, oldest first (``end=None``: to the end)."""
        raise NotImplementedError

    def backward(self, start: int, end: int) -> Iterator[Chunk]:
        """Chunks covering ``[start, end)``, newest first (plain files only)."""
        raise NotImplementedError

    def window(self, k: int) -> int:
        """Size of the ``k``-th read of a scan."""
        return self.windows[min(k, len(self.windows) - 1)]

    def head(self) -> bytes:
        """The first complete line (with its newline), at most 4 KiB; ``b""`` if none."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Identity of the file's content that survives rename and gzip: its first line."""
        head = self.head()
        return f"{zlib.crc32(head):08x}{len(head):x}" if head else ""


class PlainReader(Reader):
    """An uncompressed file, read with ``pread``; lines written after opening are not seen."""

    def __init__(self, fd: int, log_file: LogFile, windows: tuple[int, ...], size: int) -> None:
        super().__init__(fd, log_file, windows)
        self.size = size
        self._end: int | None = None

    def _pread(self, length: int, offset: int) -> int:
        self._room(length)
        try:
            n = os.preadv(self.fd, [self.view[:length]], offset)
        except OSError as exc:
            raise ReadError(f"read failed: {exc.strerror}") from None
        self.read_bytes += n
        return n

    @property
    def end(self) -> int:
        """The active file may end in a line being written: stop before it."""
        if self._end is None:
            self._end = self.size if not self.file.active else self._last_newline()
        return self._end

    def _last_newline(self) -> int:
        hi, size = self.size, 4096
        while hi > 0:
            lo = max(0, hi - size)
            n = self._pread(hi - lo, lo)
            found = self.buffer.rfind(b"\n", 0, n)
            if found != -1:
                return lo + found + 1
            hi, size = lo, min(size * 4, self.windows[-1])
        return 0

    def forward(self, start: int, end: int | None) -> Iterator[Chunk]:
        end = self.end if end is None else min(end, self.end)
        pos, k = start, 0
        while pos < end:
            want = min(self.window(k), end - pos)
            k += 1
            n = self._pread(want, pos)
            if n <= 0:
                return  # the file shrank under us
            cut = n
            if pos + n < end:
                cut = self.buffer.rfind(b"\n", 0, n) + 1
                if cut == 0:
                    if want < self.windows[-1]:
                        continue  # no whole line yet: read again, more
                    cut = n  # a line longer than the largest window: in pieces
            yield pos, 0, cut
            pos += cut

    def backward(self, start: int, end: int) -> Iterator[Chunk]:
        hi, k = min(end, self.end), 0
        while hi > start:
            want = min(self.window(k), hi - start)
            k += 1
            lo = hi - want
            if self._pread(want, lo) < want:
                return
            cut = 0
            if lo > start:
                # The window's last byte ends the line before ``hi``; a line starts inside
                # the window only after an earlier newline.
                cut = self.buffer.find(b"\n", 0, want - 1) + 1
                if cut == 0 and want < self.windows[-1]:
                    continue  # no line starts in this window: read again, more
            yield lo, cut, want
            hi = lo + cut

    def head(self) -> bytes:
        n = self._pread(min(_HEAD, self.size), 0)
        found = self.buffer.find(b"\n", 0, n)
        return bytes(self.buffer[: found + 1]) if found != -1 else b""

    def line_start(self, offset: int) -> int:
        """The first line start at or after ``offset`` (:attr:`end` if there is none).

        Offsets that come back from a client (a cursor, a tail position) go through here,
        so a read never starts inside a line, where redaction by field name cannot apply.
        """
        end = self.end
        if offset <= 0:
            return 0
        if offset >= end:
            return end
        pos, k = offset - 1, 0
        while pos < end:
            n = self._pread(min(self.window(k), end - pos), pos)
            k += 1
            if n <= 0:
                return end
            found = self.buffer.find(b"\n", 0, n)
            if found != -1:
                return pos + found + 1
            pos += n
        return end

    def tail_line(self) -> bytes:
        """The last complete line (at most 64 KiB), ``b""`` if none."""
        end = self.end
        lo = max(0, end - self.windows[0])
        n = self._pread(end - lo, lo)
        if n == 0:
            return b""
        start = self.buffer.rfind(b"\n", 0, max(0, n - 1)) + 1
        return bytes(self.buffer[start : n - 1])

    def line_at(self, offset: int) -> tuple[int, bytes] | None:
        """The first complete line starting at or after ``offset``: ``(start, line)``;
        ``None`` if there is none, or it is longer than the first read window."""
        end = self.end
        if offset >= end:
            return None
        pos = max(offset - 1, 0)
        size = 1024  # a probe of a bisection reads little: grow only for long lines
        while True:
            n = self._pread(min(size, end - pos), pos)
            first = 0
            if offset > 0:
                first = self.buffer.find(b"\n", 0, n) + 1
            stop = self.buffer.find(b"\n", first, n) if first or offset == 0 else -1
            if stop != -1:
                return pos + first, bytes(self.buffer[first:stop])
            if pos + first >= end or pos + n >= end or size >= self.windows[0]:
                return None
            size *= 4


class GzipReader(Reader):
    """A gzipped rotated file, decompressed as a stream; offsets are uncompressed ones."""

    def _stream(self) -> gzip.GzipFile:
        raw = io.BufferedReader(_PreadFile(self.fd), buffer_size=256 * 1024)
        return gzip.GzipFile(fileobj=raw, mode="rb")

    def forward(self, start: int, end: int | None) -> Iterator[Chunk]:
        """Like :meth:`PlainReader.forward`, with ``start`` and ``end`` moved to line starts
        (the first at or after each), so no chunk begins or ends inside a line."""
        pos = carry = k = 0  # pos: uncompressed offset of buffer[0]
        #: ``start`` is inside a line: skip to the next newline first.
        seeking = False
        try:
            with self._stream() as stream:
                while end is None or pos < end:
                    want = min(max(self.window(k), carry * 2), self.windows[-1])
                    k += 1
                    self._room(want, keep=carry)
                    buffer = self.buffer
                    n = stream.readinto(self.view[carry:want])
                    self.read_bytes += n
                    total = carry + n
                    if n == 0:
                        cut = total  # the last line without its newline
                    else:
                        cut = buffer.rfind(b"\n", carry, total) + 1
                        if cut == 0:
                            if total < self.windows[-1]:
                                carry = total
                                continue
                            cut = total  # a piece of a line longer than the buffer
                    lo = max(start - pos, 0)
                    if start > 0 and pos < start <= pos + cut and buffer[start - pos - 1] != 10:
                        seeking = True  # byte start-1 is not a newline: start is mid-line
                    if seeking:
                        newline = buffer.find(b"\n", lo, cut)
                        seeking = newline == -1
                        lo = cut if seeking else newline + 1
                    hi = cut if end is None else min(cut, end - pos)
                    if 0 < hi < cut and buffer[hi - 1] != 10:
                        newline = buffer.find(b"\n", hi, cut)  # end is mid-line: take it whole
                        hi = cut if newline == -1 else newline + 1
                    if hi > lo:
                        yield pos, lo, hi
                    if n == 0:
                        return
                    buffer[: total - cut] = buffer[cut:total]
                    carry = total - cut
                    pos += cut
        except (OSError, EOFError, zlib.error) as exc:
            raise ReadError(f"corrupt or unreadable gzip file: {exc}") from None

    def backward(self, start: int, end: int) -> Iterator[Chunk]:  # pragma: no cover
        raise ReadError("a gzip file cannot be read backwards")

    def head(self) -> bytes:
        try:
            with self._stream() as stream:
                data = stream.read(_HEAD)
        except (OSError, EOFError, zlib.error):
            return b""
        found = data.find(b"\n")
        return data[: found + 1] if found != -1 else b""


class _PreadFile(io.RawIOBase):
    """A read-only view of an open descriptor with its own position (``pread``), so two
    streams over one descriptor never disturb each other; closing it leaves the fd open."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = os.preadv(self._fd, [buffer], self._pos)
        self._pos += n
        return n


def first_timestamp(reader: Reader) -> str | None:
    """Timestamp of the file's first line (cheap: one small read)."""
    head = reader.head()
    return line_timestamp(head.rstrip(b"\r\n")) if head else None
