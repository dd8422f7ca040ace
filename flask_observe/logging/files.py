"""Log files: size/time rotation shared safely by processes, write failures, and the
background thread that compresses rotated files and applies retention (:mod:`.retention`).

The active file is ``<dir>/<name>`` (e.g. ``logs/app.log``). A rotation renames it to
``<stem>.<UTC time>.<suffix>`` (``app.20261123T031449-123.log``): names sort in time order
and never need renumbering, so a reader (the log viewer) never sees a file change its name
under it except ``.log`` → ``.log.gz``, which is done atomically.

Several processes may write and rotate one file (gunicorn workers). A rotation holds an
exclusive ``flock`` on ``<dir>/.<name>.lock`` around the check "is the path still the file I
write?" and the move; the move is ``link`` to a new name then ``unlink``, so it can never
replace another rotated file even without the lock. A process that finds the file rotated by
another just reopens the path.

Compression and retention run in one background thread per handler, never in the thread that
logs; the thread is woken after each rotation and once at start-up, so a crash that left an
uncompressed rotated file is caught up on the next run. A rotated file is compressed only once
nobody has written to it for :data:`QUIET_SECONDS`: other processes sharing the file go on
writing to it until their next check notices the rotation, and what they write there must not
be lost. Retention only ever deletes rotated files of this handler's stem (and partial files
compressors left), never the file being written.

A line the file cannot take (a full disk) is dropped and counted; standard error hears of it
once a minute with the count (:mod:`.reports`), not once per line, and once more when writing
works again. A line cut short by a full disk is removed again (or, when another process
appended after it, this process's next line starts with a line break), so no record is glued
to the next.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any

from .._clock import SYSTEM, Clock
from .._internal import FailureLog
from .heldwrite import MAX_HELD_BYTES, STALL_SECONDS, HeldWrite, held_write
from .locks import exclusive
from .reports import DroppedLines, EarlyDeletions, failed_close, slow_write
from .retention import (
    FileInfo,
    RetentionPolicy,
    compress,
    is_pruned,
    prune,
    rotated_files,
    rotated_name,
    rotated_pattern,
    rotation_stamp,
    select_for_deletion,
    select_for_pruning,
    stale_partials,
)

__all__ = ["RetentionPolicy", "RotatingFileHandler", "rotated_files", "rotated_pattern"]

_INTERVAL_SECONDS = {"hourly": 3600, "daily": 86400}
#: How often the active path is checked for having been rotated by another process.
_MOVED_CHECK_SECONDS = 1.0
#: A rotated file untouched this long has no writer left (each process notices a rotation
#: within ``_MOVED_CHECK_SECONDS`` of its next line) and can be compressed.
QUIET_SECONDS = 3 * _MOVED_CHECK_SECONDS
#: How long a rotation (or a compressor's last step) waits for the rotation lock before going
#: on without it: neither overwrites a file either way (``link``); the lock spares a needless
#: rotation, and a rotated name taken again while its compression ends (:func:`.compress`).
_LOCK_WAIT_SECONDS = 2.0


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
    :param clock: the time retention, compression and failure reports go by (tests move a
        ``ManualClock``); a line's own time decides its rotation.
    :param hold_gil: write each line to a regular file without releasing the GIL, until a
        write takes longer than :data:`~.heldwrite.STALL_SECONDS` (:mod:`.heldwrite`).
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
        clock: Clock = SYSTEM,
        hold_gil: bool = True,
    ) -> None:
        self.path = Path(path).absolute()
        #: Whether files opened from now on may be written with the GIL held (off after a
        #: stalled write).
        self._may_hold = hold_gil
        #: The write of the open file that keeps the GIL (``None``: the file's own write).
        self._held: HeldWrite | None = None
        self._fd = -1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(self.path, mode="a", encoding="utf-8", delay=False)
        self.max_bytes = max_bytes
        self.interval = _INTERVAL_SECONDS[interval] if interval else 0
        self.compress = compress
        self.retention = retention or RetentionPolicy()
        self.quiet_seconds = quiet_seconds
        self.clock = clock
        self._monotonic = clock.monotonic
        self._lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._size = self._current_size()
        self._next_rollover = self._compute_next_rollover(self._period_start())
        self._next_check = clock.time() + _MOVED_CHECK_SECONDS
        self._failures = FailureLog(clock=clock)
        self._dropped = DroppedLines(self.path, clock)
        #: An earlier line of ours was cut short and could not be removed: the next starts
        #: with a line break, so the fragment stays a line of its own.
        self._torn = False
        self._close_told = float("-inf")
        self.early = EarlyDeletions(self.path, clock)
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

    # -- writing and rotation (in the logging thread, under the handler lock) ------------

    def _current_size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def _period_start(self) -> float:
        """Start time of the period the existing active file belongs to."""
        try:
            return self.path.stat().st_mtime if self._size else self.clock.time()
        except OSError:
            return self.clock.time()

    def _compute_next_rollover(self, now: float) -> float:
        if not self.interval:
            return float("inf")
        return (int(now) // self.interval + 1) * self.interval

    def _open(self) -> Any:
        """The active file, unbuffered and in append mode: each line is one ``write(2)`` of
        whole bytes at the end of the file (``O_APPEND``), so processes sharing the file never
        interleave inside a line, and nothing is held in a buffer a crash would lose."""
        stream = open(self.baseFilename, "ab", buffering=0)  # noqa: SIM115 (kept open)
        self._fd = stream.fileno()
        self._held = held_write(self._fd) if self._may_hold else None
        return stream

    def _detach(self) -> Any:
        """The open file, no longer the handler's (nothing is written through its descriptor,
        even if closing it fails), for the caller to close; ``None`` if none is open."""
        stream, self.stream = self.stream, None
        self._held, self._fd = None, -1
        return stream

    def _close(self, stream: Any) -> None:
        """Close a file no longer written (``_detach``ed): a close that fails (an NFS server
        reporting a write it had deferred) is told on standard error (once a minute at most),
        and the rotation or reopening goes on, so the line being written is not lost too."""
        if stream is None:
            return
        try:
            stream.close()
        except OSError as exc:
            now = self._monotonic()  # said at most once a minute (not through logging: the
            if now - self._close_told >= 60.0:  # handler's own lock is held here)
                self._close_told = now
                failed_close(self.path, exc)

    def _stalled(self, took: float) -> None:
        """A held write took ``took`` seconds (a congested or frozen disk): the file's writes
        release the GIL from now on, so a stalled disk does not stop every thread again."""
        self._may_hold, self._held = False, None
        slow_write(self.path, took)

    @property
    def holds_gil(self) -> bool:
        """Whether lines are written to the open file without releasing the GIL."""
        return self._held is not None

    def handle(self, record: logging.LogRecord) -> bool:
        """``Handler.handle``, without its calls to ``filter``, ``acquire`` and ``release``
        when the handler has no filters (every line of the app comes through here)."""
        if self.filters:
            return super().handle(record)
        with self.lock:  # type: ignore[union-attr]
            self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            formatter = self.formatter
            text = (
                formatter.format(record) if formatter is not None else self.format(record)
            ) + self.terminator
            try:  # _encode(), inlined
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                data = text.encode("utf-8", "backslashreplace")
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)  # a record that cannot be formatted: a bug to show
            return
        self._write_or_drop(data, record.created)

    def write_line(self, line: str, created: float) -> None:
        """Write an already formatted line (the access log's fast path)."""
        line += self.terminator
        try:  # _encode(), inlined
            data = line.encode("utf-8")
        except UnicodeEncodeError:
            data = line.encode("utf-8", "backslashreplace")
        with self.lock:  # type: ignore[union-attr]
            self._write_or_drop(data, created)

    def _write_or_drop(self, data: bytes, created: float) -> None:
        """Write one line (rotating first if it is due), or count it dropped."""
        try:
            if created >= self._next_check:
                self._next_check = created + _MOVED_CHECK_SECONDS
                self._catch_up()
            size = len(data)
            if (
                self.max_bytes and self._size and self._size + size > self.max_bytes
            ) or created >= self._next_rollover:
                self.rotate(created)
            stream: Any = self.stream  # a raw binary file here (see _open), not the TextIO typed
            if stream is None:
                stream = self.stream = self._open()
            if self._torn:
                data = b"\n" + data
                size += 1
            held = self._held
            if held is None or size >= MAX_HELD_BYTES:
                written = stream.write(data) or 0
            else:
                monotonic = self._monotonic
                started = monotonic()
                written = held(self._fd, data, size)
                took = monotonic() - started
                if took > STALL_SECONDS:
                    self._stalled(took)
                if written < 0:  # nothing written: again, the usual way, which raises the error
                    written = stream.write(data) or 0
            if written < size:  # a short write (e.g. disk nearly full)
                write = stream.write
                view = memoryview(data)
                try:
                    while written < size:
                        step = write(view[written:])
                        if not step:
                            raise OSError(errno.EIO, "log line only partly written")
                        written += step
                except OSError:
                    # The part written is removed again if nobody appended after it (then what
                    # was torn before, if anything, still is); else the next line separates it.
                    if not _cut_fragment(stream.fileno(), written):
                        self._torn = True
                    raise
            self._torn = False
            self._size += size
        except OSError as exc:
            self._dropped.failed(exc)
        except Exception:
            self._failures("writing a log line")
        else:
            if self._dropped.failing:
                self._dropped.written()

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
        self._close(self._detach())
        self.stream = self._open()
        self._size = self._current_size()
        self._torn = False  # a new file: nothing of ours to separate from
        return True

    def rotate(self, now: float | None = None) -> Path | None:
        """Rename the active file away and start a new one; returns the rotated path, or
        ``None`` if another process sharing the file had rotated it already (then this one
        only reopens the path) or it was empty."""
        now = self.clock.time() if now is None else now
        self._next_rollover = self._compute_next_rollover(now)
        with exclusive(self._lock_path, _LOCK_WAIT_SECONDS):
            if self._reopen_if_moved():
                return None
            self._close(self._detach())
            target = self._move_aside(now) if self._current_size() > 0 else None
            self.stream = self._open()
            self._size = 0
            self._torn = False
        if target is not None:
            with self._cond:
                self._requested += 1
                self._cond.notify_all()
        return target

    def _move_aside(self, now: float) -> Path | None:
        """Give the active file a rotated name no other file has: ``link`` fails rather than
        replace an existing name, so a rotated file is never overwritten. Called under the
        rotation lock, under which a compressor also puts its ``.gz`` in place and removes
        the file (:func:`.retention.compress`): a name and its ``.gz`` are not both free
        while one of them is being compressed."""
        stamp = rotation_stamp(now)
        for counter in range(10_000):
            candidate = self.path.with_name(rotated_name(self.path.name, stamp, counter))
            if candidate.with_name(candidate.name + ".gz").exists():
                continue
            try:
                os.link(self.path, candidate)
            except FileExistsError:
                continue
            except FileNotFoundError:
                return None  # moved by a process that did not take the lock
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                    raise
                # No hard links here (some file systems): a rename, under the lock.
                if candidate.exists():
                    continue
                os.rename(self.path, candidate)
                return candidate
            os.unlink(self.path)
            return candidate
        raise OSError(errno.EEXIST, f"no free rotated name for {self.path} at {stamp}")

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
            failure: BaseException | None = None
            for path in rotated_files(self.path.parent, self.path.name):
                if path.suffix == ".gz" or self._stopping:
                    continue
                if is_pruned(path):
                    continue  # kept as pruned (compressing anew would reset its age)
                try:
                    idle = self.clock.time() - path.stat().st_mtime
                except FileNotFoundError:  # compressed by another process meanwhile
                    continue
                if idle < self.quiet_seconds:
                    wait = self.quiet_seconds - idle + 0.05
                    retry_in = wait if retry_in is None else min(retry_in, wait)
                    continue
                try:
                    compress(path, self._lock_path, _LOCK_WAIT_SECONDS)
                except OSError as exc:  # a full disk: the file stays; retention still runs
                    failure = exc
                    break
            self.apply_retention()
            if failure is not None:
                raise failure
            return retry_in
        self.apply_retention()
        return retry_in

    def _rotated_infos(self) -> list[FileInfo]:
        infos = []
        for path in rotated_files(self.path.parent, self.path.name):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            infos.append(FileInfo(path, st.st_size, st.st_mtime))
        return infos

    def apply_retention(self) -> list[Path]:
        """Delete rotated files beyond the age, count and total-size limits (oldest first),
        and partial files compressors left behind; returns what was deleted."""
        now = self.clock.time()
        directory, name = self.path.parent, self.path.name
        stale, live_partial_bytes = stale_partials(directory, name, now)
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        infos = self._rotated_infos()
        if self.retention.keeps_errors:
            pruned = False
            for info in select_for_pruning(infos, self.retention, now):
                if self._stopping:
                    break
                try:
                    pruned = prune(info.path) is not None or pruned
                except OSError:  # a full disk: the file stays whole; retention goes on
                    self._failures(f"keeping only the errors of {info.path.name}")
            if pruned:
                infos = self._rotated_infos()
        # Budget the active file at the size it may grow to before its next rotation, so the
        # limit holds between runs too, not just at the moment of this one.
        reserved = max(self._current_size(), self.max_bytes) + live_partial_bytes
        doomed, early = select_for_deletion(infos, self.retention, now, reserved)
        deleted = []
        for info in doomed:
            with contextlib.suppress(FileNotFoundError):
                info.path.unlink()
                deleted.append(info)
        gone = {info.path for info in deleted}
        early = [info for info in early if info.path in gone]
        if early:
            kept = [info for info in infos if info.path not in gone]
            self.early.deleted(early, kept[0].mtime if kept else None)
        return stale + [info.path for info in deleted]

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
        with self.lock:  # type: ignore[union-attr]
            self._dropped.close()
            self._held, self._fd = None, -1  # FileHandler.close drops the stream itself
        super().close()


def _cut_fragment(fd: int, written: int) -> bool:
    """Remove the ``written`` bytes a short write left at the end of the file, unless another
    process appended after them; returns whether they are gone."""
    if written <= 0:
        return True
    try:
        end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: just past what we wrote
        if os.fstat(fd).st_size != end:
            return False
        os.ftruncate(fd, end - written)
    except OSError:
        return False
    return True


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
