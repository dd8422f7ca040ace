"""What the log files tell people when they fail: lines dropped (a full disk), and lines
retention had to delete early (younger than the minimum age, to keep the disk budget)."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .._clock import Clock

if TYPE_CHECKING:
    from .retention import FileInfo

__all__ = [
    "EARLY_REPORT_SECONDS",
    "FAILURE_REPORT_SECONDS",
    "DroppedLines",
    "EarlyDeletions",
    "failed_close",
    "slow_write",
]

logger = logging.getLogger("flask_observe")

#: Standard error hears about lines a file cannot take at most this often.
FAILURE_REPORT_SECONDS = 60.0
#: Early deletions are logged at most this often, with what was deleted since the last line.
EARLY_REPORT_SECONDS = 60.0


class DroppedLines:
    """Lines a log file could not take (a full disk), told to standard error: at most one
    message per interval, each with the number of lines dropped since the one before — the
    first failure at once, the rest (and that writing works again) when the interval allows,
    whatever remains when the file is closed.

    Not through logging: the file that fails is one of logging's own destinations. The
    handler calls it under its lock.
    """

    def __init__(self, path: Path, clock: Clock, interval: float = FAILURE_REPORT_SECONDS) -> None:
        self.path = path
        self.clock = clock
        self.interval = interval
        #: Whether lines were dropped that a message has not yet said are followed by good ones.
        self.failing = False
        #: Lines dropped since the last message.
        self.unreported = 0
        #: Lines dropped since writing last worked (for the message that says it works again).
        self.total = 0
        self._error = ""
        self._said_at: float | None = None

    def _due(self) -> bool:
        said = self._said_at
        return said is None or self.clock.monotonic() - said >= self.interval

    def _say(self, text: str) -> None:
        self._said_at = self.clock.monotonic()
        self.unreported = 0
        _say(f"flask_observe: {text}")

    def failed(self, exc: OSError) -> None:
        """A line could not be written (and is dropped)."""
        self.failing = True
        self.unreported += 1
        self.total += 1
        self._error = f"{type(exc).__name__}: {exc}"
        if self._due():
            self._say(
                f"cannot write to {self.path} ({self._error}): {self.unreported} log line(s)"
                f" dropped since the last message; lines go on being dropped until it can,"
                f" and this is said at most once every {self.interval:g} s"
            )

    def written(self) -> None:
        """A line was written after some were dropped."""
        if not self._due():
            return
        self._say(
            f"writing to {self.path} works again; {self.unreported} log line(s) dropped since"
            f" the last message, {self.total} since it failed ({self._error})"
        )
        self.failing = False
        self.total = 0

    def close(self) -> None:
        """The file is being closed: say what no message said yet."""
        if self.unreported:
            self._say(
                f"closing {self.path}: {self.unreported} log line(s) dropped since the last"
                f" message ({self._error})"
            )


class EarlyDeletions:
    """What retention deleted younger than the minimum age to keep the disk budget: counted
    (``files``, ``bytes``, and the listeners the metrics feature adds) and logged at WARNING
    at most once per :data:`EARLY_REPORT_SECONDS` with the totals since the last line."""

    def __init__(self, path: Path, clock: Clock, interval: float = EARLY_REPORT_SECONDS) -> None:
        self.path = path
        self.clock = clock
        self.interval = interval
        self.files = 0
        self.bytes = 0
        self._listeners: list[Callable[[int, int], None]] = []
        self._pending = (0, 0)
        self._logged_at: float | None = None
        self._lock = threading.Lock()

    def listen(self, listener: Callable[[int, int], None]) -> Callable[[], None]:
        """Call ``listener(files, bytes)`` on each early deletion; returns the undo."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def deleted(self, infos: list[FileInfo], oldest_kept: float | None) -> None:
        files, size = len(infos), sum(info.size for info in infos)
        now = self.clock.monotonic()
        with self._lock:
            self.files += files
            self.bytes += size
            listeners = list(self._listeners)
            pending_files, pending_bytes = self._pending
            pending_files, pending_bytes = pending_files + files, pending_bytes + size
            due = self._logged_at is None or now - self._logged_at >= self.interval
            if due:
                self._logged_at = now
                self._pending = (0, 0)
            else:
                self._pending = (pending_files, pending_bytes)
        for listener in listeners:
            with contextlib.suppress(Exception):
                listener(files, size)
        if due:
            kept_since = (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(oldest_kept))
                if oldest_kept is not None
                else None
            )
            logger.warning(
                "flask_observe: log retention deleted %d file(s), %d bytes, of %s younger than"
                " OBSERVE_LOG_RETENTION_MIN_SECONDS to stay within OBSERVE_LOG_RETENTION_BYTES;"
                " the oldest line left is from %s",
                pending_files,
                pending_bytes,
                self.path.name,
                kept_since or "the active file",
                extra={
                    "retention_early_files": pending_files,
                    "retention_early_bytes": pending_bytes,
                    "retention_oldest_kept": kept_since,
                },
            )


def slow_write(path: Path, seconds: float) -> None:
    """Say that a write to ``path`` took ``seconds``, so its lines are written releasing the
    GIL from now on (:mod:`.heldwrite`); the handler calls it once, when it switches."""
    _say(
        f"flask_observe: a write to {path} took {seconds:.3f} s (a slow or stalled disk); its"
        " lines are written releasing the GIL from now on, so that a stalled write stops only"
        " the thread that logs"
    )


def failed_close(path: Path, error: OSError) -> None:
    """Say that closing ``path`` after a rotation failed (lines written before may be lost:
    a network file system reports a deferred write error at the close); logging goes on."""
    _say(
        f"flask_observe: closing {path} failed ({error}); lines written to it just before may"
        " not have reached the disk; logging goes on"
    )


def _say(text: str) -> None:
    with contextlib.suppress(Exception):  # standard error gone too: nothing left to tell
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
