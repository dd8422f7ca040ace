"""Rotated log files: their names, which of them retention deletes, and compressing them.

Retention deletes rotated files by age and by the total size of the log (the disk budget),
never the file being written, and never a file younger than the minimum age because of how
many files there are: a flood of requests that makes many files cannot push the last hour's
lines out. Only the disk budget may delete a file younger than the minimum age; that is an
*early* deletion, counted and logged by the handler (:mod:`.files`).

With ``error_age_days`` longer than ``max_age_days`` (``OBSERVE_LOG_RETENTION_ERROR_DAYS``), a
rotated file that reaches ``max_age_days`` is not deleted but *pruned*: rewritten as
``app.<UTC time>.errors.log[.gz]`` with only its ``error`` and ``critical`` lines, its
modification time kept, and deleted at ``error_age_days``. The errors stay in the same
stream, in the same order, so the log viewer searches them with the rest as one log. Pruned
files do not count against ``max_files`` (they are bounded by their age and the disk budget).

Several processes share one log directory (gunicorn workers), and each runs compression and
retention. One compressor works on a rotated file at a time: it holds an exclusive ``flock``
on the file while it writes ``<file>.gz.partial-<pid>``, and a process that cannot take the
lock leaves the file to the one that has it. A compressor that fails removes its partial
file; one that died on the way leaves it, and retention removes it once its process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .locks import claimed, exclusive

__all__ = [
    "FileInfo",
    "RetentionPolicy",
    "compress",
    "is_pruned",
    "prune",
    "rotated_files",
    "rotated_pattern",
    "select_for_deletion",
    "select_for_pruning",
    "stale_partials",
]

#: A partial file untouched this long has no compressor left, whatever its pid says (the pid
#: may have been reused, or be another container's): a live compressor writes to it steadily.
STALE_PARTIAL_SECONDS = 600.0


@dataclass(frozen=True)
class RetentionPolicy:
    """Limits on rotated files; 0 disables a limit.

    :param max_age_days: delete rotated files older than this.
    :param max_files: keep at most this many rotated files, counting only those older than
        ``min_age_seconds``: younger ones are never deleted for their number.
    :param max_total_bytes: keep the active file (counted at the size it may reach) plus the
        rotated ones under this; the oldest go first, younger than ``min_age_seconds`` too if
        they must (an early deletion, logged and counted).
    :param min_age_seconds: lines younger than this are kept whatever the file count.
    """

    max_age_days: float = 14.0
    max_files: int = 50
    max_total_bytes: int = 1024 * 1024 * 1024
    min_age_seconds: float = 3600.0
    #: Keep the ``error`` and ``critical`` lines of rotated files this long (longer than
    #: ``max_age_days``, else 0: errors go with the rest).
    error_age_days: float = 0.0

    @property
    def keeps_errors(self) -> bool:
        return bool(self.max_age_days) and self.error_age_days > self.max_age_days


@dataclass(frozen=True)
class FileInfo:
    """A rotated file as retention sees it: its size and when it was last written."""

    path: Path
    size: int
    mtime: float


def rotated_pattern(active_name: str) -> re.Pattern[str]:
    """The names rotated from ``active_name`` take, compressed or not."""
    stem, ext = _split(active_name)
    ext = re.escape(ext)
    return re.compile(
        rf"{re.escape(stem)}\.(\d{{8}}T\d{{6}}-\d{{3}})(?:-(\d+))?(\.errors)?{ext}(\.gz)?\Z"
    )


def is_pruned(path: Path) -> bool:
    """Whether a rotated file holds only the errors of its time (``….errors.log[.gz]``)."""
    return ".errors." in path.name


def _partial_pattern(active_name: str) -> re.Pattern[str]:
    stem, ext = _split(active_name)
    return re.compile(
        rf"{re.escape(stem)}\.\d{{8}}T\d{{6}}-\d{{3}}(?:-\d+)?(?:\.errors)?{re.escape(ext)}"
        rf"(?:\.gz)?\.partial-(\d+)\Z"
    )


def _split(active_name: str) -> tuple[str, str]:
    stem, dot, suffix = active_name.rpartition(".")
    if not dot:
        return active_name, ""
    return stem, "." + suffix


def rotation_stamp(now: float) -> str:
    """The UTC time in a rotated file's name: ``20261123T031449-123``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{int((now % 1) * 1000):03d}"


def rotated_name(active_name: str, stamp: str, counter: int = 0) -> str:
    """``app.log`` rotated at ``stamp`` → ``app.<stamp>.log`` (``app.<stamp>-<n>.log``)."""
    stem, ext = _split(active_name)
    return f"{stem}.{stamp}{f'-{counter}' if counter else ''}{ext}"


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


def select_for_deletion(
    files: list[FileInfo], policy: RetentionPolicy, now: float, reserved: int
) -> tuple[list[FileInfo], list[FileInfo]]:
    """The rotated files retention deletes, and which of those are younger than the minimum
    age (deleted only to keep the disk budget).

    :param files: the rotated files, oldest first.
    :param now: the current time (epoch seconds).
    :param reserved: bytes counted against the budget besides the rotated files (the active
        file at the size it may reach, partial files of running compressors).
    :returns: ``(doomed, early)``, both oldest first; ``early`` is a part of ``doomed``.
    """
    young_since = now - policy.min_age_seconds
    doomed: list[FileInfo] = []
    kept = files
    if policy.max_age_days:
        cutoff = min(now - policy.max_age_days * 86400, young_since)
        if policy.keeps_errors:
            # Past max_age_days a file is pruned to its errors (select_for_pruning), not
            # deleted: it goes at error_age_days.
            cutoff = min(now - policy.error_age_days * 86400, young_since)
        doomed = [f for f in kept if f.mtime < cutoff]
        kept = [f for f in kept if f.mtime >= cutoff]
    counted = [f for f in kept if not is_pruned(f.path)]
    if policy.max_files and len(counted) > policy.max_files:
        excess = len(counted) - policy.max_files
        old = set([f for f in counted if f.mtime < young_since][:excess])
        doomed += [f for f in kept if f in old]
        kept = [f for f in kept if f not in old]
    early: list[FileInfo] = []
    if policy.max_total_bytes:
        total = reserved + sum(f.size for f in kept)
        for info in kept:
            if total <= policy.max_total_bytes:
                break
            doomed.append(info)
            total -= info.size
            if info.mtime >= young_since:
                early.append(info)
    return doomed, early


def select_for_pruning(
    files: list[FileInfo], policy: RetentionPolicy, now: float
) -> list[FileInfo]:
    """The rotated files past ``max_age_days`` (and the minimum age) to keep only the errors
    of, when the policy keeps errors longer; oldest first."""
    if not policy.keeps_errors:
        return []
    cutoff = min(now - policy.max_age_days * 86400, now - policy.min_age_seconds)
    return [f for f in files if f.mtime < cutoff and not is_pruned(f.path)]


#: The levels pruning keeps (as the JSON lines write them).
KEPT_LEVELS = frozenset(("error", "critical", "fatal"))


def _is_error_line(line: bytes) -> bool:
    import json

    if b'"level"' not in line:
        return False
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("level") in KEPT_LEVELS


def pruned_name(path: Path) -> Path:
    """``app.<stamp>.log.gz`` → ``app.<stamp>.errors.log.gz``."""
    name = path.name
    gz = name.endswith(".gz")
    base = name[:-3] if gz else name
    stem, ext = _split(base)
    return path.with_name(f"{stem}.errors{ext}{'.gz' if gz else ''}")


def prune(path: Path) -> tuple[Path, int] | None:
    """Rewrite the rotated file ``path`` with only its error lines (compressed as it was),
    keeping its modification time, then remove ``path``; returns the new file and the number
    of lines kept, or ``None`` if it was not pruned here (gone, or another process is at it).

    The claim is the compressor's (an exclusive ``flock`` on ``path``); a failure removes the
    partial file and leaves ``path`` as it was.
    """
    target = pruned_name(path)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        src = open(path, "rb")  # noqa: SIM115 - held (with its lock) to the end
    except FileNotFoundError:
        return None
    with src, claimed(src) as mine:
        st = os.fstat(src.fileno())
        if not mine or st.st_nlink == 0:
            return None
        kept = 0
        try:
            reader: Any = gzip.GzipFile(fileobj=src) if path.name.endswith(".gz") else src
            opener: Any = gzip.open if target.name.endswith(".gz") else open
            with opener(partial, "wb") as dst:
                for line in reader:
                    if _is_error_line(line):
                        dst.write(line if line.endswith(b"\n") else line + b"\n")
                        kept += 1
            os.utime(partial, (st.st_atime, st.st_mtime))
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return target, kept


def stale_partials(directory: Path, active_name: str, now: float) -> tuple[list[Path], int]:
    """Partial files (``*.gz.partial-<pid>``) of ``active_name`` no compressor is writing
    any more — their process is gone, is this one (whose compressor is not running while
    retention is), or they were left untouched for :data:`STALE_PARTIAL_SECONDS` — and the
    bytes of the others (live compressors' work, counted against the budget)."""
    pattern = _partial_pattern(active_name)
    stale: list[Path] = []
    live_bytes = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return [], 0
    for entry in entries:
        match = pattern.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        pid = int(match.group(1))
        mine = pid == os.getpid()
        if (mine and not _being_compressed(Path(entry.path))) or (
            not mine and (not _alive(pid) or now - st.st_mtime > STALE_PARTIAL_SECONDS)
        ):
            stale.append(Path(entry.path))
        else:
            live_bytes += st.st_size
    return stale, live_bytes


def _being_compressed(partial: Path) -> bool:
    """Whether a compressor of this process holds the claim on ``partial``'s source (another
    thread calling :func:`compress` while retention runs)."""
    source = partial.with_name(partial.name.split(".gz.partial-", 1)[0].split(".partial-")[0])
    try:
        handle = open(source, "rb")  # noqa: SIM115 - closed below, lock with it
    except FileNotFoundError:
        return False
    with handle, claimed(handle) as free:
        return not free


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OverflowError:
        return False
    return True


def compress(path: Path, lock_path: Path | None = None, wait: float = 2.0) -> Path | None:
    """Compress ``path`` to ``path.gz`` atomically, then remove ``path``; ``None`` if it was
    not compressed here (gone already, or another process is compressing it right now).

    The claim is an exclusive, non-blocking ``flock`` on the file itself: it ends with the
    process that holds it, so a compressor that died leaves no stale claim. On any failure
    (a full disk) the partial file is removed and the error raised; the rotated file stays.

    ``lock_path`` is the rotation lock of the active file (:func:`.locks.exclusive`, waited
    for at most ``wait`` seconds): the ``.gz`` is put in place and ``path`` removed under it.
    A rotation picks its file's name under the same lock, taking a name only if neither it
    nor its ``.gz`` exists, so it does not see the name free between those two steps and
    take it again. Where the lock cannot be had (no ``flock`` on the file system, a holder
    stuck past ``wait``), nothing is lost either: a ``.gz`` is never replaced. If one of the
    name exists already, it is either this file's compression by a compressor that died
    before removing the file (same content: the file is removed) or another file's, whose
    name a rotation took again (the file moves to a free name of the same time, compressed
    on the next run).
    """
    target = path.with_name(path.name + ".gz")
    partial = path.with_name(f"{path.name}.gz.partial-{os.getpid()}")
    try:
        src = open(path, "rb")  # noqa: SIM115 - held (with its lock) to the end
    except FileNotFoundError:
        return None
    with src, claimed(src) as mine:
        if not mine or os.fstat(src.fileno()).st_nlink == 0:
            return None  # another compressor is at it, or finished it
        try:
            with gzip.open(partial, "wb", compresslevel=6) as dst:
                # Read to the end, however long the file has grown meanwhile (a late writer).
                shutil.copyfileobj(src, dst, 1024 * 1024)
            with exclusive(lock_path, wait) if lock_path is not None else contextlib.nullcontext():
                if not _publish(partial, target):
                    partial.unlink()
                    if not _compressed_already(src, target):
                        _move_to_free_name(path)
                        return None
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
    return target


#: ``link`` errors of a file system without hard links.
_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS)


def _publish(partial: Path, target: Path) -> bool:
    """Give ``partial`` the name ``target`` unless a file has it (``link`` fails rather than
    replace it); whether it did. The partial file is gone if it did."""
    try:
        os.link(partial, target)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if target.exists():  # no hard links here: a check, then a rename
            return False
        os.rename(partial, target)
        return True
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    return True


def _compressed_already(src: Any, target: Path) -> bool:
    """Whether ``target`` holds exactly what ``src`` holds (read again from its start)."""
    src.seek(0)
    try:
        with gzip.open(target, "rb") as existing:
            while True:
                ours, theirs = src.read(1024 * 1024), existing.read(1024 * 1024)
                if ours != theirs:
                    return False
                if not ours:
                    return True
    except (OSError, EOFError):  # not a whole gzip file
        return False


#: A rotated name's time and counter, and what follows them (``.errors``, the suffix).
_STAMPED = re.compile(r"(.*\.\d{8}T\d{6}-\d{3})(?:-(\d+))?((?:\.errors)?(?:\.[^.]+)?)\Z")


def _move_to_free_name(path: Path) -> Path:
    """Move the rotated file ``path`` to the next counter of its time that neither it nor its
    ``.gz`` has (``link``, which never replaces a file, then ``unlink``)."""
    match = _STAMPED.match(path.name)
    if match is None:
        raise OSError(errno.EEXIST, f"{path.name}.gz exists and holds another file")
    head, counter, rest = match.group(1), int(match.group(2) or 0), match.group(3)
    for n in range(counter + 1, counter + 10_000):
        candidate = path.with_name(f"{head}-{n}{rest}")
        if candidate.with_name(candidate.name + ".gz").exists():
            continue
        try:
            os.link(path, candidate)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_LINKS or candidate.exists():
                raise
            os.rename(path, candidate)
            return candidate
        os.unlink(path)
        return candidate
    raise OSError(errno.EEXIST, f"no free name for {path.name}")
