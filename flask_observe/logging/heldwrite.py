"""A log line's ``write(2)`` to a regular file made without releasing the GIL.

``os.write`` and a raw file's ``write`` release the GIL around the system call, as every call
that may block must. Appending one line to a regular local file copies a few hundred bytes
into the page cache: about 0.5 µs. Releasing the GIL for that long does not let another
thread do useful work; it wakes one up for nothing. CPython's GIL signals a waiting thread at
every release, and a waiter that finds the GIL taken again goes back to wait a whole switch
interval anew, so while the request thread writes lines between stretches of Python, a
background thread that wants the GIL (an export thread, the batch span processor, the
console's writer, the files' own maintenance thread) is woken at each write, finds the GIL
taken back, and waits again, until it happens to win a race. On the 2-vCPU VM of
docs/performance.md one of those futile wake-ups cost the writing thread about 13-31 µs of CPU
(the wake of a thread on the other CPU), and each turn a background thread took of the GIL
cost tens of them: with every line also exported over OTLP, the export thread was switched in
about 37,000 times in 20,000 requests, against about 650 with the lines written as here, and
the request thread paid most of what the OTLP pipeline cost (docs/performance.md, "OTLP logs and
metrics").

Written through the C library's ``write`` called with :class:`ctypes.PyDLL` (which keeps the
GIL), the same system call and flags (the file's ``O_APPEND``: processes sharing it still never
interleave inside a line); a thread that wants the GIL gets it when the writing thread's switch
interval is up, once, as between two threads running Python.

What it must not do is stop every thread of the process when the disk stalls. Only regular
files on a local file system are written this way: never a pipe or a terminal (their reader
may be slow), never a file on a network or user-space file system (NFS, SMB, FUSE, 9p,
virtiofs, Ceph: on Linux, the mount's type in ``/proc/self/mountinfo``), only on POSIX, and only
lines below :data:`MAX_HELD_BYTES`. A write that took longer than :data:`STALL_SECONDS` (a
congested or frozen local disk: a normal one takes microseconds) makes the handler release the
GIL for its writes from then on, and says so on standard error once. That first slow write
still stops every thread for as long as it takes (a file system frozen for a snapshot, say);
``OBSERVE_LOG_FILE_HOLDS_GIL=false`` turns the held write off for a log directory where that
may happen.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable

__all__ = ["MAX_HELD_BYTES", "REMOTE_FILE_SYSTEMS", "STALL_SECONDS", "HeldWrite", "held_write"]

#: A write held the GIL this long: the handler's writes release it from then on.
STALL_SECONDS = 0.05
#: Longer lines are written the usual way (the GIL held for a bounded copy only, and the
#: length always fits the C ``int`` ctypes passes it as).
MAX_HELD_BYTES = 1 << 20
#: Mount types (or their prefix before a dot: ``fuse.sshfs``) whose writes may wait on a
#: network or another process: never written with the GIL held.
REMOTE_FILE_SYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse", "fuseblk", "9p", "virtiofs", "ceph",
        "glusterfs", "lustre", "gpfs", "afs", "beegfs", "davfs", "ncpfs", "orangefs",
    }
)  # fmt: skip
_MOUNTINFO = "/proc/self/mountinfo"

#: ``write(fd, data, length)`` -> bytes written, or -1 (``errno`` set) when nothing was.
HeldWrite = Callable[[int, bytes, int], int]


@functools.cache
def _load() -> HeldWrite | None:
    """The C library's ``write`` through ``ctypes.PyDLL`` (the GIL kept), if there is one."""
    if os.name != "posix":
        return None
    try:
        import ctypes

        write = ctypes.PyDLL(None).write
    except (ImportError, OSError, AttributeError):
        return None
    write.restype = ctypes.c_ssize_t
    # Arguments as ctypes converts them without argtypes (faster): the descriptor and the
    # length as C ints (the caller keeps the length below MAX_HELD_BYTES), the bytes as a
    # pointer to their buffer.
    return write


def file_system_type(device: int, mountinfo: str = _MOUNTINFO) -> str | None:
    """The type of the mounted file system ``device`` (``st_dev``) belongs to, from Linux's
    ``mountinfo`` (``None`` where there is none, or the device is not listed)."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.split()
                if len(fields) > 2 and fields[2] == wanted and " - " in line:
                    return line.split(" - ", 1)[1].split()[0]
    except OSError:
        return None
    return None


def is_remote(fs_type: str | None) -> bool:
    """Whether a mount of ``fs_type`` may wait on a network or another process."""
    return fs_type is not None and fs_type.split(".", 1)[0] in REMOTE_FILE_SYSTEMS


def held_write(fd: int) -> HeldWrite | None:
    """The write that keeps the GIL, for ``fd`` if it is a regular file on a local file system
    (else ``None``: the usual write, which releases it)."""
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or is_remote(file_system_type(info.st_dev)):
        return None
    return _load()
