"""Log files: size/time rotation, gzip of rotated files, and retention.

The active file is ``<dir>/<name>`` (e.g. ``logs/app.log``). A rotation renames it to
``<stem>.<UTC time>.<suffix>`` (``app.20261123T031449-123.log``): names sort in time order,
never collide and never need renumbering, so a reader (the log viewer) never sees a file
change its name under it except ``.log`` → ``.log.gz``, which is done atomically.

Compression and retention run in one background thread per handler, never in the thread that
logs; the thread is woken after each rotation and once at start-up, so a crash that left an
uncompressed rotated file is caught up on the next run. A rotated file is compressed only once
nobody has written to it for :data:`QUIET_SECONDS`: other processes sharing the file go on
writing to it until their next check notices the rotation, and what they write there must not
be lost. Retention only ever deletes rotated files of this handler's stem, never the file
being written.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import re
import shutil
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._internal import FailureLog

__all__ = ["RetentionPolicy", "RotatingFileHandler", "rotated_files"]

_INTERVAL_SECONDS = {"hourly": 3600, "daily": 86400}
_STAMP = "%Y%m%dT%H%M%S"
#: How often the active path is checked for having been rotated by another process.
_MOVED_CHECK_SECONDS = 1.0
#: A rotated file untouched this long has no writer left (each process notices a rotation
#: within ``_MOVED_CHECK_SECONDS`` of its next line) and can be compressed.
QUIET_SECONDS = 3 * _MOVED_CHECK_SECONDS


@dataclass(frozen=True)
class RetentionPolicy:
    """Limits on rotated files; 0 disables a limit."""

    max_age_days: float = 14.0
    max_files: int = 50
    max_total_bytes: int = 1024 * 1024 * 1024


def rotated_pattern(active_name: str) -> re.Pattern[str]:
    """The names rotated from ``active_name`` take, compressed or not."""
    stem, dot, suffix = active_name.rpartition(".")
    if not dot:
        stem, suffix = active_name, ""
    ext = re.escape("." + suffix) if suffix else ""
    return re.compile(rf"{re.escape(stem)}\.(\d{{8}}T\d{{6}}-\d{{3}})(?:-(\d+))?{ext}(\.gz)?\Z")


def rotated_files(directory: Path, active_name: str) -> list[Path]:
    """Rotated files of ``active_name`` in ``directory``, oldest first."""
    pattern = rotated_pattern(active_name)
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        match = pattern.match(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            found.append((match.group(1), int(match.group(2) or 0), entry.name))
    found.sort()
    return [directory / name for _, _, name in found]


class RotatingFileHandler(logging.FileHandler):
    """A file handler that rotates by size and/or UTC hour/day and hands rotated files to a
    background thread for gzip and retention.

    :param path: the active log file.
    :param max_bytes: rotate before a line would make the file larger than this; 0: never.
    :param interval: ``"hourly"``, ``"daily"`` or ``None``.
    :param compress: gzip rotated files.
    :param retention: limits applied to rotated files after each rotation.
    :param quiet_seconds: compress a rotated file only once it was not written for this long
        (other processes sharing the file may still write to it until they notice the
        rotation); tests of a single process use 0.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 10 * 1024 * 1024,
        interval: str | None = None,
        compress: bool = True,
        retention: RetentionPolicy | None = None,
        quiet_seconds: float = QUIET_SECONDS,
    ) -> None:
        self.path = Path(path).absolute()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(self.path, mode="a", encoding="utf-8", delay=False)
        self.max_bytes = max_bytes
        self.interval = _INTERVAL_SECONDS[interval] if interval else 0
        self.compress = compress
        self.retention = retention or RetentionPolicy()
        self.quiet_seconds = quiet_seconds
        self._size = self._current_size()
        self._next_rollover = self._compute_next_rollover(self._period_start())
        self._next_check = time.time() + _MOVED_CHECK_SECONDS
        self._failures = FailureLog()
        self._start_worker()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _restart_after_fork(ref))

    def _start_worker(self) -> None:
        self._cond = threading.Condition()
        self._requested = 1  # catch up on what an earlier run (or the parent) left behind
        self._completed = 0
        self._stopping = False
        self._worker = threading.Thread(
            target=self._maintain_loop, name=f"flask_observe-logfiles-{self.path.name}", daemon=True
        )
        self._worker.start()

    # -- rotation (runs in the logging thread, under the handler lock) -------------------

    def _current_size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def _period_start(self) -> float:
        """Start time of the period the existing active file belongs to."""
        try:
            return self.path.stat().st_mtime if self._size else time.time()
        except OSError:
            return time.time()

    def _compute_next_rollover(self, now: float) -> float:
        if not self.interval:
            return float("inf")
        return (int(now) // self.interval + 1) * self.interval

    def _open(self) -> Any:
        """The active file, unbuffered and in append mode: each line is one ``write(2)`` of
        whole bytes at the end of the file (``O_APPEND``), so processes sharing the file never
        interleave inside a line, and nothing is held in a buffer a crash would lose."""
        return open(self.baseFilename, "ab", buffering=0)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(_encode(self.format(record) + self.terminator), record.created)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_line(self, line: str, created: float) -> None:
        """Write an already formatted line (the access log's fast path)."""
        with self.lock:  # type: ignore[union-attr]
            try:
                self._write(_encode(line + self.terminator), created)
            except Exception:
                self._failures("writing a log line")

    def _write(self, data: bytes, created: float) -> None:
        if created >= self._next_check:
            self._next_check = created + _MOVED_CHECK_SECONDS
            self._catch_up()
        if (
            self.max_bytes and self._size and self._size + len(data) > self.max_bytes
        ) or created >= self._next_rollover:
            self.rotate(created)
        if self.stream is None:
            self.stream = self._open()
        stream: Any = self.stream  # a raw binary file here (see _open), not the TextIO typed
        write = stream.write
        written = write(data)
        if written is not None and written < len(data):  # a short write (e.g. disk nearly full)
            view = memoryview(data)
            while written < len(data):
                step = write(view[written:])
                if not step:
                    raise OSError("log line only partly written")
                written += step
        self._size += len(data)

    def _catch_up(self) -> None:
        """Follow other processes sharing the file (once a second): reopen it if one of them
        rotated it, and count the bytes they wrote, so size rotation goes by the file's real
        size (give or take one second of their lines) rather than by this process's share."""
        if self._reopen_if_moved() or self.stream is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._size = os.fstat(self.stream.fileno()).st_size

    def _is_moved(self) -> bool:
        """Whether the path no longer names the file we write (another process rotated it)."""
        if self.stream is None:
            return True
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return True
        ours = os.fstat(self.stream.fileno())
        return (on_disk.st_ino, on_disk.st_dev) != (ours.st_ino, ours.st_dev)

    def _reopen_if_moved(self) -> bool:
        if not self._is_moved():
            return False
        if self.stream is not None:
            self.stream.close()
        self.stream = self._open()
        self._size = self._current_size()
        return True

    def rotate(self, now: float | None = None) -> Path | None:
        """Rename the active file away and start a new one; returns the rotated path."""
        now = time.time() if now is None else now
        self._next_rollover = self._compute_next_rollover(now)
        if self._reopen_if_moved():
            return None  # another process sharing the file rotated it already
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        target = None
        if self._current_size() > 0:
            target = self._rotation_target(now)
            os.replace(self.path, target)
        self.stream = self._open()
        self._size = 0
        with self._cond:
            self._requested += 1
            self._cond.notify_all()
        return target

    def _rotation_target(self, now: float) -> Path:
        stem, dot, suffix = self.path.name.rpartition(".")
        if not dot:
            stem, suffix = self.path.name, ""
        ext = "." + suffix if suffix else ""
        stamp = time.strftime(_STAMP, time.gmtime(now)) + f"-{int((now % 1) * 1000):03d}"
        candidate = self.path.with_name(f"{stem}.{stamp}{ext}")
        counter = 0
        while candidate.exists() or candidate.with_name(candidate.name + ".gz").exists():
            counter += 1
            candidate = self.path.with_name(f"{stem}.{stamp}-{counter}{ext}")
        return candidate

    # -- maintenance (background thread) -------------------------------------------------

    def _maintain_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._completed < self._requested)
                if self._stopping:
                    return
                target = self._requested
            retry_in = None
            try:
                retry_in = self.maintain()
            except Exception:
                self._failures("log file compression/retention")
            with self._cond:
                if retry_in is not None:
                    # A rotated file may still have writers: look again once it is quiet.
                    self._cond.wait_for(lambda: self._stopping, retry_in)
                    continue
                self._completed = target
                self._cond.notify_all()

    def maintain(self) -> float | None:
        """Compress rotated files and apply retention (also called by the background thread).

        :returns: seconds until a rotated file left uncompressed (written to too recently)
            may be compressed, or ``None`` if none was left.
        """
        retry_in = None
        if self.compress:
            for path in rotated_files(self.path.parent, self.path.name):
                if path.suffix == ".gz" or self._stopping:
                    continue
                try:
                    idle = time.time() - path.stat().st_mtime
                except FileNotFoundError:  # compressed by another process meanwhile
                    continue
                if idle < self.quiet_seconds:
                    wait = self.quiet_seconds - idle + 0.05
                    retry_in = wait if retry_in is None else min(retry_in, wait)
                    continue
                _gzip(path)
        self.apply_retention()
        return retry_in

    def apply_retention(self) -> list[Path]:
        """Delete rotated files beyond the age, count and total-size limits; oldest first."""
        policy = self.retention
        files = rotated_files(self.path.parent, self.path.name)
        stats = []
        for path in files:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            stats.append((path, st.st_size, st.st_mtime))
        doomed: list[Path] = []
        now = time.time()
        if policy.max_age_days:
            cutoff = now - policy.max_age_days * 86400
            doomed += [p for p, _, mtime in stats if mtime < cutoff]
        kept = [s for s in stats if s[0] not in doomed]
        if policy.max_files and len(kept) > policy.max_files:
            excess = len(kept) - policy.max_files
            doomed += [p for p, _, _ in kept[:excess]]
            kept = kept[excess:]
        if policy.max_total_bytes:
            # Budget the active file at the size it may grow to before its next rotation, so
            # the limit holds between runs too, not just at the moment of this one.
            active = max(self._current_size(), self.max_bytes)
            total = active + sum(size for _, size, _ in kept)
            for path, size, _ in kept:
                if total <= policy.max_total_bytes:
                    break
                doomed.append(path)
                total -= size
        for path in doomed:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return doomed

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until pending compression/retention is done (for tests and shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._completed >= self._requested, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Close the file and stop the background thread, waiting at most ``timeout``."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout)
        super().close()


def _encode(text: str) -> bytes:
    """UTF-8 for the file; a lone surrogate (from a badly decoded header, say) is written as an
    escape rather than losing the whole line."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _restart_after_fork(ref: weakref.ref[RotatingFileHandler]) -> None:
    """Threads do not survive fork(): give a forked worker (gunicorn, Celery) its own."""
    handler = ref()
    if handler is not None and handler.stream is not None:
        handler._start_worker()


def _gzip(path: Path) -> Path:
    """Compress ``path`` to ``path.gz`` atomically, then remove ``path``.

    Processes sharing the log directory may compress the same file at once: each writes its
    own temporary file, and the source being gone means another one finished first.
    """
    target = path.with_name(path.name + ".gz")
    partial = path.with_name(f"{path.name}.gz.partial-{os.getpid()}")
    try:
        with open(path, "rb") as src, gzip.open(partial, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
    except FileNotFoundError:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        return target
    os.replace(partial, target)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return target
