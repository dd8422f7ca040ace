"""Cross-process locks on log files (``flock``), safe across fork().

A rotation holds an exclusive lock on ``<dir>/.<name>.lock`` around its check-and-move
(:func:`exclusive`); a compressor holds one on the rotated file it compresses (:func:`claimed`).
``flock`` locks belong to an open file, which a fork() child shares: the child of a process
that forked while holding one would keep it taken for as long as it lives, since the thread
that would release it does not exist there. So every descriptor holding a lock is noted, and a
child closes its copies at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process locks, names still unique
    fcntl = None  # type: ignore[assignment]

__all__ = ["claimed", "exclusive"]

#: Descriptors this process holds an ``flock`` through (closed in a fork() child).
_HELD: set[int] = set()
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def claimed(file: IO[bytes]) -> Iterator[bool]:
    """Try to take an exclusive ``flock`` on ``file`` without waiting."""
    if fcntl is None:  # pragma: no cover
        yield True
        return
    fd = file.fileno()
    _hold(fd)  # before the lock: a fork() at any point leaves the child able to drop it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError as exc:  # a file system without flock (some network ones)
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            yield True
            return
        try:
            yield True
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        _release(fd)


def _hold(fd: int) -> None:
    """Note that ``fd`` holds an ``flock`` (see :data:`_HELD`)."""
    with _HELD_LOCK:
        _HELD.add(fd)


def _release(fd: int) -> None:
    with _HELD_LOCK:
        _HELD.discard(fd)


@contextlib.contextmanager
def exclusive(lock_path: Path, wait: float = 2.0) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``lock_path`` (made if missing), waiting at most
    ``wait`` seconds for another holder; yields whether it is held."""
    if fcntl is None:  # pragma: no cover
        yield False
        return
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        yield False
        return
    _hold(fd)  # before the lock: a fork() at any point leaves the child able to drop it
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.0005)
            except OSError:  # no flock on this file system
                yield False
                return
        try:
            yield True
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        _release(fd)
        os.close(fd)


def _close_inherited() -> None:
    """In a fork() child: drop the copies of the parent's locked descriptors. The thread that
    held them does not exist here, so nothing would ever close them, and the lock would stay
    taken for as long as the child lives."""
    global _HELD_LOCK
    _HELD_LOCK = threading.Lock()  # another thread may have held it at the fork
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited)
