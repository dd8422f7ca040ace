"""A log file's lines written without releasing the GIL (flask_observe/logging/heldwrite.py):
only to regular files, the same bytes and appends as the usual write, the usual write again
after a failed or slow one, and the point of it: a thread waiting for the GIL is not woken at
every line."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from flask_observe._clock import ManualClock
from flask_observe.logging.files import RotatingFileHandler, rotated_files
from flask_observe.logging.heldwrite import (
    MAX_HELD_BYTES,
    STALL_SECONDS,
    file_system_type,
    held_write,
    is_remote,
)

from .conftest import file_record

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the C library's write: POSIX only")


def messages(path: Path) -> list[str]:
    return [json.loads(line)["message"] for line in path.read_text("utf-8").splitlines()]


def test_lines_to_a_regular_file_are_written_keeping_the_gil_and_arrive_whole(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """The default: a regular file's lines go through the GIL-keeping write, every one whole
    and in order, rotation and size accounting as with the usual write; after a rotation the
    new file is written the same way."""
    handler = make_handler(max_bytes=4000, compress=False)
    assert handler.holds_gil
    for i in range(300):
        handler.emit(file_record(f"line {i:04d} " + "é" * 20))
    assert handler.holds_gil  # a rotation reopened the file: still held
    files = [*rotated_files(tmp_path, "app.log"), tmp_path / "app.log"]
    assert len(files) > 3
    assert all(p.stat().st_size <= 4000 for p in files)
    got = [m for p in files for m in messages(p)]
    assert got == [f"line {i:04d} " + "é" * 20 for i in range(300)]


def test_the_setting_off_and_files_that_are_not_regular_use_the_usual_write(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """``hold_gil=False`` writes the usual way; so does a FIFO (its reader may be slow), whose
    lines still arrive."""
    assert not make_handler("off.log", hold_gil=False).holds_gil
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so opening for write works
    try:
        assert held_write(reader) is None
        handler = make_handler("pipe.log", max_bytes=0)
        assert not handler.holds_gil
        handler.emit(file_record("through the pipe"))
        assert json.loads(os.read(reader, 65536))["message"] == "through the pipe"
    finally:
        os.close(reader)


def test_observe_turns_it_off_with_the_setting(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    def file_handler(app: Flask) -> RotatingFileHandler:
        found = [h for h in logging.getLogger().handlers if isinstance(h, RotatingFileHandler)]
        return next(h for h in found if h.path.parent == tmp_path / app.name)

    on = make_app("on", log_dir=str(tmp_path / "on"))
    off = make_app("off", log_dir=str(tmp_path / "off"), log_file_holds_gil=False)
    assert file_handler(on).holds_gil
    assert not file_handler(off).holds_gil


def test_a_slow_write_switches_the_file_to_the_usual_write_and_says_so_once(
    make_handler: Callable[..., RotatingFileHandler],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A held write that took longer than STALL_SECONDS (the disk stalled, every thread of the
    process waited): its line is written once, and every later line releases the GIL."""
    clock = ManualClock()
    handler = make_handler(clock=clock)
    real = handler._held
    assert real is not None
    calls: list[int] = []

    def stalled(fd: int, data: bytes, length: int) -> int:
        calls.append(length)
        clock.advance(STALL_SECONDS * 3)  # what the stalled disk made the write take
        return real(fd, data, length)

    handler._held = stalled
    handler.emit(file_record("slow"))
    assert not handler.holds_gil
    handler.emit(file_record("after"))
    handler.emit(file_record("and after"))
    assert len(calls) == 1
    assert messages(tmp_path / "app.log") == ["slow", "after", "and after"]
    handler.rotate()  # a new file: still written the usual way
    assert not handler.holds_gil
    err = capsys.readouterr().err
    assert err.count("took 0.150 s") == 1
    assert "releasing the GIL from now on" in err


def test_a_held_write_that_fails_is_made_again_the_usual_way(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """The C write returned -1 (it wrote nothing: interrupted, say): the line goes through the
    file's own write, once; a fast failure does not switch the file off the held write."""
    handler = make_handler()
    real = handler._held
    assert real is not None
    failures = [1]

    def failing(fd: int, data: bytes, length: int) -> int:
        if failures:
            failures.pop()
            return -1
        return real(fd, data, length)

    handler._held = failing
    handler.emit(file_record("retried"))
    handler.emit(file_record("held again"))
    assert messages(tmp_path / "app.log") == ["retried", "held again"]
    assert handler.holds_gil


def test_a_file_on_a_network_or_user_space_file_system_is_not_held(tmp_path: Path) -> None:
    """The mount a file's device belongs to, from ``mountinfo``: NFS, SMB, FUSE (with its
    subtype), 9p, virtiofs are remote; ext4, tmpfs, overlay are not; a device not listed is
    unknown (held where the file is regular)."""
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "40 22 0:50 / /mnt/share rw,relatime shared:20 - nfs4 server:/export rw,vers=4.2\n"
        "41 22 0:51 / /home/u/remote rw,nosuid - fuse.sshfs u@host:/ rw\n"
    )
    assert file_system_type(os.makedev(8, 1), str(mountinfo)) == "ext4"
    assert file_system_type(os.makedev(0, 50), str(mountinfo)) == "nfs4"
    assert file_system_type(os.makedev(0, 51), str(mountinfo)) == "fuse.sshfs"
    assert file_system_type(os.makedev(9, 9), str(mountinfo)) is None
    assert file_system_type(os.makedev(8, 1), str(tmp_path / "none")) is None
    assert [is_remote(t) for t in ("nfs4", "fuse.sshfs", "cifs", "9p", "virtiofs")] == [True] * 5
    assert [is_remote(t) for t in ("ext4", "xfs", "tmpfs", "overlay", None)] == [False] * 5


def test_a_line_of_a_mebibyte_or_more_is_written_the_usual_way(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """The GIL is held for a bounded copy only (and the length always fits ctypes' C int)."""
    handler = make_handler(max_bytes=0)
    real = handler._held
    assert real is not None
    calls: list[int] = []

    def counting(fd: int, data: bytes, length: int) -> int:
        calls.append(length)
        return real(fd, data, length)

    handler._held = counting
    handler.emit(file_record("small"))
    handler.emit(file_record("x" * MAX_HELD_BYTES))
    assert len(calls) == 1
    assert [len(m) for m in messages(tmp_path / "app.log")] == [5, MAX_HELD_BYTES]


def _switches(tid: int) -> int:
    status = Path(f"/proc/self/task/{tid}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


@pytest.mark.realtime
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread counts in /proc")
def test_a_thread_waiting_for_the_gil_is_not_woken_at_every_line(
    make_handler: Callable[..., RotatingFileHandler],
) -> None:
    """What it is for. A background thread that wakes every millisecond and then wants the GIL
    (as an export thread does) while this thread logs between stretches of Python: with the
    usual write it is woken at the lines, finds the GIL taken back and sleeps again; with the
    held write it waits for the switch interval, once. Its context switches are counted by
    the kernel (``/proc``), over the same number of lines each way."""

    def busy() -> int:
        return sum(range(600))

    def run(handler: RotatingFileHandler) -> int:
        stop = threading.Event()
        ready: list[int] = []

        def background() -> None:
            ready.append(threading.get_native_id())
            while not stop.is_set():
                time.sleep(0.001)
                busy()

        thread = threading.Thread(target=background, daemon=True)
        thread.start()
        while not ready:
            time.sleep(0.001)
        before = _switches(ready[0])
        line = file_record("x" * 200)
        for _ in range(8000):
            busy()
            handler.emit(line)
        after = _switches(ready[0])
        stop.set()
        thread.join(5)
        return after - before

    released = run(make_handler("released.log", hold_gil=False))
    held = run(make_handler("held.log"))
    print(f"background thread's context switches over 8000 lines: released {released}, held {held}")
    assert held * 3 < released
