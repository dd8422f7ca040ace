"""The files the log viewer may read, and reading them without trusting a name or a file.

Readable files are exactly those the logging pipeline writes: each configured active file
(``app.log``) and the files rotated from it (:func:`~flask_observe.retention.rotated_files`:
``app.<UTC time>.log`` and ``.log.gz``). A name that arrives over HTTP passes, in order:

1. a syntax check — empty, over 255 characters, control characters (NUL included), ``/``,
   ``\\``, ``%`` (an encoded name that was decoded once already) or ``..``: :class:`BadName`;
2. membership in the current listing — anything else: :class:`NoSuchFile`;
3. canonical resolution (symlinks followed) and ``is_relative_to`` the canonical log
   directory, as a direct child, a regular file — a symlink leading out: :class:`NoSuchFile`;
4. the log's own file: one link (``st_nlink == 1``: a hard link in the directory to a file
   elsewhere has two, and its canonical path is inside, so step 3 cannot see it), on the
   directory's device, owned by this process's user or the directory's owner;
5. opened with ``O_NOFOLLOW | O_NONBLOCK`` on the canonical path and checked again with
   ``fstat`` (regular file, the log's own), so a swap between check and open is caught.

Rotation renames (one link before and after) and gzip writes a new file of its own: files
the logging pipeline makes always pass step 4. A log file given a second name by hand
(``ln app.log backup.log``) is refused until that name is removed: copy, do not link.

Reading is in :mod:`.readers`.
"""

from __future__ import annotations

import calendar
import contextlib
import os
import re
import stat
import time
from pathlib import Path

from ..logging.files import rotated_files, rotated_pattern
from .readers import GzipReader, LogFile, PlainReader, Reader, ReadError

__all__ = ["BadName", "LogFile", "LogStore", "NoSuchFile", "ReadError", "Reader"]

_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\%]|\.\.")
MAX_NAME = 255
#: Read windows grow from the first to the last: a tail of 100 lines reads 64 KiB, a scan
#: of a large file soon reads 4 MiB at a time.
WINDOWS = (64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024)


class BadName(ValueError):
    """A file name that can never be valid (HTTP 400)."""


class NoSuchFile(LookupError):
    """No readable log file by that name (HTTP 404)."""


def check_name(name: str) -> None:
    """:raises BadName: if ``name`` cannot be the name of a log file."""
    if not name or len(name) > MAX_NAME or _FORBIDDEN.search(name) or name == ".":
        raise BadName("invalid file name")


def _rotation_time(stamp: str) -> float:
    moment, _, millis = stamp.partition("-")
    return calendar.timegm(time.strptime(moment, "%Y%m%dT%H%M%S")) + int(millis) / 1000.0


class LogStore:
    """The log directory and the active files (streams) shown from it.

    :param directory: the log directory (``OBSERVE_LOG_DIR``).
    :param streams: active file names; each is shown with its rotated files.
    :param windows: read sizes, growing (tests use tiny ones to cross every boundary).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        streams: tuple[str, ...],
        windows: tuple[int, ...] = WINDOWS,
    ) -> None:
        self.directory = Path(directory)
        self.streams = streams
        self.windows = windows

    def base(self) -> Path | None:
        """The canonical log directory, ``None`` while it does not exist."""
        try:
            base = self.directory.resolve(strict=True)
        except OSError:
            return None
        return base if base.is_dir() else None

    def owns(self, st: os.stat_result, directory: os.stat_result | None = None) -> bool:
        """Whether ``st`` is a file of the log's own: a regular file with one link, on the
        log directory's device, owned by this process's user or the directory's owner.

        :param directory: the log directory's ``stat`` (looked up when not given).
        """
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return False
        if directory is None:
            try:
                directory = os.stat(self.directory)
            except OSError:
                return False
        return st.st_dev == directory.st_dev and st.st_uid in (os.geteuid(), directory.st_uid)

    def files(self, stream: str | None = None) -> list[LogFile]:
        """Every readable file (of ``stream`` only, if given), oldest first."""
        base = self.base()
        if base is None:
            return []
        try:
            directory = os.stat(base)
        except OSError:
            return []
        found: list[LogFile] = []
        for name in self.streams if stream is None else (stream,):
            active = self._inside(base, base / name, directory)
            if active is not None:
                with contextlib.suppress(OSError):
                    found.append(self._entry(active, name, name, None))
            pattern = rotated_pattern(name)
            for path in rotated_files(base, name):
                match = pattern.match(path.name)
                if match is None:  # pragma: no cover - rotated_files matched it already
                    continue
                if self._inside(base, path, directory) != path:
                    continue  # a symlink, a hard link, another owner's file: not the log's
                with contextlib.suppress(OSError):
                    found.append(self._entry(path, path.name, name, _rotation_time(match[1])))
        found.sort(key=lambda f: f.order_key)
        return found

    def _inside(
        self, base: Path, path: Path, directory: os.stat_result | None = None
    ) -> Path | None:
        """``path`` canonicalised, if it is a file of the log's own directly inside ``base``."""
        try:
            canonical = path.resolve(strict=True)
            st = canonical.stat()
        except (OSError, RuntimeError):  # missing, a symlink loop
            return None
        if not canonical.is_relative_to(base) or canonical.parent != base:
            return None
        return canonical if self.owns(st, directory) else None

    @staticmethod
    def _entry(path: Path, name: str, stream: str, rotated_at: float | None) -> LogFile:
        st = path.stat()
        return LogFile(
            name=name,
            path=path,
            stream=stream,
            active=rotated_at is None,
            compressed=name.endswith(".gz"),
            size=st.st_size,
            mtime=st.st_mtime,
            rotated_at=rotated_at,
            identity=(st.st_dev, st.st_ino),
        )

    def resolve(self, name: str) -> LogFile:
        """The listed file called ``name``.

        :raises BadName: for a name that can never be valid.
        :raises NoSuchFile: for any other name that is not a listed, safe file.
        """
        check_name(name)
        base = self.base()
        listed = {f.name: f for f in self.files()} if base is not None else {}
        found = listed.get(name)
        if found is None or base is None:
            raise NoSuchFile(name)
        canonical = self._inside(base, base / name)
        if canonical is None or canonical != found.path:
            raise NoSuchFile(name)
        return found

    def open(self, log_file: LogFile) -> Reader:
        """A reader of ``log_file``; :raises ReadError: if it is gone or not what was listed."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(log_file.path, flags)
        except OSError as exc:
            raise ReadError(f"cannot open: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ReadError("not a regular file")
            if not self.owns(st):
                raise ReadError("not a file of this log (a second link, or another owner)")
            if log_file.compressed:
                return GzipReader(fd, log_file, self.windows)
            return PlainReader(fd, log_file, self.windows, st.st_size)
        except BaseException:
            os.close(fd)
            raise
