"""Where a live tail is: a :class:`Position` — a :class:`Mark` (inode, offset, first-line
fingerprint) for each file it follows or finished lately, and a horizon: files rotated before
it that have no mark are not new to the tail. The HTTP layer hands positions out signed
(:mod:`.signing`) as event IDs and as the polling tail's ``next``; :mod:`.follow` takes them
back, moving offsets to line starts.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from dataclasses import dataclass

from .._clock import SYSTEM, Clock
from ..logging.files import QUIET_SECONDS
from .readers import PlainReader, ReadError
from .signing import Signer
from .store import LogStore

__all__ = ["SLACK_SECONDS", "Mark", "Position", "fingerprint", "head_of", "start_position"]

#: Rotation times of files made by different processes may be out of order by this much.
SLACK_SECONDS = 2.0
_PURPOSE = "tail"
MAX_MARKS = 256


def fingerprint(head: bytes) -> str:
    """What :meth:`~.readers.Reader.fingerprint` gives for a file whose first line (with
    its newline) is ``head``."""
    return f"{zlib.crc32(head):08x}{len(head):x}" if head else ""


@dataclass(frozen=True)
class Mark:
    """Where a tail is in one file: read up to ``offset`` (``-1``: all of it, skip it)."""

    identity: tuple[int, int]
    offset: int
    #: Fingerprint of the file's first line (recognises it compressed; ``""``: none yet).
    head: str
    #: Rotation time, if known (marks of finished files are dropped once behind the horizon).
    stamp: float | None


@dataclass(frozen=True)
class Position:
    """Where a tail is: a mark for each file it follows or finished lately; files rotated
    before ``horizon`` that it has no mark for are not new to it."""

    marks: tuple[Mark, ...]
    horizon: float

    def encode(self, signer: Signer) -> str:
        marks = [[m.identity[0], m.identity[1], m.offset, m.head, _ms(m.stamp)] for m in self.marks]
        return signer.dumps(_PURPOSE, [1, _ms(self.horizon), marks])

    @classmethod
    def decode(cls, text: str, signer: Signer) -> Position:
        """:raises ValueError: unless ``text`` is a position ``signer`` signed."""
        try:
            version, horizon, raw = signer.loads(_PURPOSE, text)
            if version != 1 or not isinstance(horizon, int) or len(raw) > MAX_MARKS:
                raise ValueError
            marks = []
            for device, inode, offset, head, stamp in raw:
                if not all(isinstance(v, int) for v in (device, inode, offset)):
                    raise ValueError
                if not isinstance(head, str) or offset < -1 or len(head) > 24:
                    raise ValueError
                if stamp is not None and not isinstance(stamp, int):
                    raise ValueError
                marks.append(Mark((device, inode), offset, head, _s(stamp)))
            return cls(tuple(marks), horizon / 1000.0)
        except (TypeError, ValueError):  # BadSignature is a ValueError
            raise ValueError("not a position of this log viewer") from None


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _s(millis: int | None) -> float | None:
    return None if millis is None else millis / 1000.0


def head_of(fd: int) -> str:
    """Fingerprint of the first line of the open plain file ``fd`` (``""`` if none yet)."""
    try:
        data = os.pread(fd, 4096, 0)
    except OSError:
        return ""
    found = data.find(b"\n")
    return fingerprint(data[: found + 1]) if found != -1 else ""


def start_position(store: LogStore, stream: str, clock: Clock = SYSTEM) -> Position:
    """Where a tail of ``stream`` starts now: at the end of the active file and of every
    rotated file that may still grow; everything already compressed is behind it."""
    now = clock.time()
    horizon = now - SLACK_SECONDS
    marks = []
    for entry in store.files(stream):
        recent = entry.rotated_at is not None and entry.rotated_at > horizon
        if entry.compressed:
            if recent:  # behind the start, though rotated after the horizon
                with contextlib.suppress(ReadError), store.open(entry) as reader:
                    head = reader.fingerprint()
                    marks.append(Mark(entry.identity, -1, head, entry.rotated_at))
            continue
        if not (entry.active or recent or entry.mtime >= now - QUIET_SECONDS):
            continue
        with contextlib.suppress(ReadError), store.open(entry) as reader:
            st = os.fstat(reader.fd)
            if (st.st_dev, st.st_ino) == entry.identity and isinstance(reader, PlainReader):
                end = reader.end if entry.active else reader._last_newline()
                marks.append(Mark(entry.identity, end, head_of(reader.fd), entry.rotated_at))
    return Position(tuple(marks), horizon)
