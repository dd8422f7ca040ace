"""Log files: size and time rotation, gzip off the logging thread, and retention limits."""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_observe.logging import ObserveFormatter
from flask_observe.logging.files import (
    QUIET_SECONDS,
    RetentionPolicy,
    RotatingFileHandler,
    rotated_files,
)
from flask_observe.logging.retention import compress, rotated_name, rotation_stamp

from .conftest import file_record, read_json_lines


def all_messages(directory: Path) -> list[str]:
    """Messages of the active file and every rotated one (gzipped or not), oldest first."""
    messages: list[str] = []
    for path in [*rotated_files(directory, "app.log"), directory / "app.log"]:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            messages += [line for line in fh.read().splitlines() if line]
    return [__import__("json").loads(m)["message"] for m in messages]


def test_size_rotation_gzips_and_loses_nothing(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """Rotating at 2 kB: every line survives, in order, rotated files end up gzipped."""
    handler = make_handler(max_bytes=2000, retention=RetentionPolicy(0, 0, 0))
    for i in range(200):
        handler.emit(file_record(f"line {i:04d}"))
    assert handler.wait_idle(10)
    rotated = rotated_files(tmp_path, "app.log")
    assert len(rotated) >= 5
    assert all(p.name.endswith(".log.gz") for p in rotated)
    assert all_messages(tmp_path) == [f"line {i:04d}" for i in range(200)]
    assert (tmp_path / "app.log").stat().st_size <= 2000
    for path in rotated:
        with gzip.open(path, "rb") as fh:
            assert len(fh.read()) <= 2000


def test_retention_keeps_at_most_n_files_newest_first(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """max_files=3 and no minimum age: only the three newest rotated files remain; the active
    file is kept."""
    handler = make_handler(max_bytes=1000, retention=RetentionPolicy(0, 3, 0, 0))
    for i in range(300):
        handler.emit(file_record(f"line {i:04d}"))
    assert handler.wait_idle(10)
    rotated = rotated_files(tmp_path, "app.log")
    assert len(rotated) == 3
    messages = all_messages(tmp_path)
    assert messages[-1] == "line 0299"
    assert messages == sorted(messages)
    assert "line 0000" not in messages


def test_retention_by_total_bytes(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """max_total_bytes bounds active + rotated files on disk."""
    handler = make_handler(max_bytes=1500, compress=False, retention=RetentionPolicy(0, 0, 6000))
    for i in range(400):
        handler.emit(file_record(f"line {i:04d}"))
    assert handler.wait_idle(10)
    files = [*rotated_files(tmp_path, "app.log"), tmp_path / "app.log"]
    assert sum(p.stat().st_size for p in files) <= 6000
    assert all_messages(tmp_path)[-1] == "line 0399"


def test_retention_by_age_never_touches_active_file(tmp_path: Path) -> None:
    """Files older than max_age_days go at start-up; the old active file and others stay."""
    old = time.time() - 30 * 86400
    stale = tmp_path / "app.20200101T000000-000.log.gz"
    fresh = tmp_path / "app.20991231T000000-000.log.gz"
    unrelated = tmp_path / "other.20200101T000000-000.log.gz"
    active = tmp_path / "app.log"
    for path in (stale, fresh, unrelated, active):
        path.write_bytes(b"{}\n")
        os.utime(path, (old, old))
    os.utime(fresh, None)
    handler = RotatingFileHandler(active, retention=RetentionPolicy(14, 0, 0))
    try:
        assert handler.wait_idle(10)
        assert not stale.exists()
        assert fresh.exists()
        assert unrelated.exists()
        assert active.exists()
    finally:
        handler.close()


def test_uncompressed_leftovers_are_compressed_at_start(tmp_path: Path) -> None:
    """A rotated file a crash left uncompressed is gzipped by the next start-up."""
    leftover = tmp_path / "app.20261122T101010-000.log"
    leftover.write_text('{"message": "survivor"}\n')
    hour_ago = time.time() - 3600
    os.utime(leftover, (hour_ago, hour_ago))
    handler = RotatingFileHandler(tmp_path / "app.log")
    try:
        assert handler.wait_idle(10)
        assert not leftover.exists()
        with gzip.open(tmp_path / (leftover.name + ".gz"), "rt") as fh:
            assert "survivor" in fh.read()
    finally:
        handler.close()


def test_hourly_rotation_at_the_hour_boundary(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """With interval='hourly', the first record of a new UTC hour starts a new file."""
    handler = make_handler(max_bytes=0, interval="hourly", compress=False)
    now = time.time()
    next_hour = (int(now) // 3600 + 1) * 3600
    handler.emit(file_record("before", now))
    handler.emit(file_record("after", next_hour + 1))
    handler.emit(file_record("after too", next_hour + 2))
    assert handler.wait_idle(10)
    (rotated,) = rotated_files(tmp_path, "app.log")
    assert [x["message"] for x in read_json_lines(rotated)] == ["before"]
    active = read_json_lines(tmp_path / "app.log")
    assert [x["message"] for x in active] == ["after", "after too"]


def test_rotation_by_another_process_is_followed(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """Two writers on one file (e.g. two workers): after one rotates, the other reopens."""
    first = make_handler(max_bytes=0, compress=False)
    second = make_handler(max_bytes=0, compress=False)
    first.emit(file_record("one"))
    second.emit(file_record("two"))
    first.rotate()
    later = time.time() + 5  # past the moved-file check interval
    second.emit(file_record("three", later))
    first.emit(file_record("four", later))
    active = [x["message"] for x in read_json_lines(tmp_path / "app.log")]
    assert active == ["three", "four"]
    (rotated,) = rotated_files(tmp_path, "app.log")
    assert [x["message"] for x in read_json_lines(rotated)] == ["one", "two"]


def test_size_rotation_counts_what_other_writers_add(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """Three writers on one file (gunicorn workers), rotating at 20 kB: each counts the others'
    bytes at its once-a-second check, so no file grows far past the limit. Counting only its
    own share, each would let the file reach about three times the limit."""
    limit = 20_000
    writers = [make_handler(max_bytes=limit, compress=False) for _ in range(3)]
    start = time.time()
    # 60 simulated seconds; each second every writer logs 10 lines (about 1 kB).
    for second in range(60):
        for n in range(10):
            for index, handler in enumerate(writers):
                handler.emit(file_record(f"w{index} s{second} n{n}", start + second + n / 10))
    files = [*rotated_files(tmp_path, "app.log"), tmp_path / "app.log"]
    sizes = [path.stat().st_size for path in files]
    assert len(files) >= 5
    # The slack: one second of the other writers' lines (about 2 kB) plus a line.
    assert max(sizes) <= limit + 3_000, sizes
    assert sorted(all_messages(tmp_path)) == sorted(
        f"w{i} s{s} n{n}" for s in range(60) for n in range(10) for i in range(3)
    )


@pytest.mark.realtime
def test_lines_another_process_writes_after_a_rotation_are_compressed_not_lost(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """Two writers on one file: the second goes on writing to the rotated file until its
    next check notices the rotation. The first compresses that file only once it has been
    quiet, so those lines end up in the .gz instead of in a deleted inode."""
    first = make_handler(max_bytes=0, quiet_seconds=QUIET_SECONDS)  # as in production
    second = make_handler(max_bytes=0, compress=False)
    first.emit(file_record("one"))
    second.emit(file_record("two"))
    first.rotate()
    time.sleep(0.3)  # the first's compressor is awake and looking at the rotated file
    second.emit(file_record("three, before the second noticed"))
    later = time.time() + 5  # past the moved-file check interval
    second.emit(file_record("four", later))
    assert first.wait_idle(15)
    (rotated,) = rotated_files(tmp_path, "app.log")
    assert rotated.suffix == ".gz"
    with gzip.open(rotated, "rt") as fh:
        messages = [json.loads(line)["message"] for line in fh]
    assert messages == ["one", "two", "three, before the second noticed"]
    assert [x["message"] for x in read_json_lines(tmp_path / "app.log")] == ["four"]


@pytest.mark.realtime
def test_a_compression_ending_while_a_rotation_picks_a_name_loses_nothing(
    make_handler: Callable[..., RotatingFileHandler],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two rotations in one millisecond (one name): the first rotated file's compressor puts
    its .gz in place and removes the file just as the second rotation has found that name free
    of a .gz and links the active file to it. The compressor's last step waits for the
    rotation's lock, so the second rotation finds the name still taken and takes the next;
    else the second file's compression would replace the first's .gz (CI lost 18 lines of 200
    so)."""
    handler = make_handler(max_bytes=0, compress=False)
    now = time.time()
    handler.emit(file_record("first", now))
    first = handler.rotate(now)
    assert first is not None
    assert first.name == rotated_name("app.log", rotation_stamp(now), 0)
    handler.emit(file_record("second", now))
    real_link = os.link
    compressors: list[threading.Thread] = []

    def link_as_the_compressor_ends(src: str, dst: str) -> None:
        if not compressors:  # the rotation has just seen no .gz of the first rotated file
            lock = handler._lock_path  # waited for past the join below
            compressor = threading.Thread(target=compress, args=(first, lock, 30.0))
            compressors.append(compressor)
            compressor.start()
            compressor.join(1.0)  # ends at once, unless its last step waits for the lock
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link_as_the_compressor_ends)
    second = handler.rotate(now)
    monkeypatch.undo()
    compressors[0].join(10)
    assert not compressors[0].is_alive()
    assert second is not None
    assert second.name == rotated_name("app.log", rotation_stamp(now), 1)
    assert first.with_name(first.name + ".gz").exists()
    assert not first.exists()
    compress(second)
    handler.emit(file_record("third", now))
    assert all_messages(tmp_path) == ["first", "second", "third"]


class _CloseFails:
    """The handler's file, whose close fails after closing it (NFS reporting a deferred
    write error at the close)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def write(self, data: bytes) -> int:
        return int(self.raw.write(data))

    def fileno(self) -> int:
        return int(self.raw.fileno())

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.raw.close()
        raise OSError(errno.EIO, "Input/output error")


def test_a_rotation_whose_close_fails_goes_on_and_loses_no_line(
    make_handler: Callable[..., RotatingFileHandler],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The old file's close fails at a rotation (EIO): the rotation still happens, the line
    that caused it is written to the new file, and standard error says so once a minute."""
    handler = make_handler(max_bytes=300, compress=False)
    handler.emit(file_record("first " + "x" * 150))
    for _ in range(3):  # each line rotates (a full file), each close fails
        handler.stream = _CloseFails(handler.stream)  # type: ignore[assignment]
        handler.emit(file_record("next " + "y" * 150))
    assert all_messages(tmp_path) == ["first " + "x" * 150] + ["next " + "y" * 150] * 3
    assert len(rotated_files(tmp_path, "app.log")) == 3
    said = capsys.readouterr().err
    assert said.count("closing") == 1, said
    assert "Input/output error" in said
    assert handler._dropped.failing is False


def test_observe_wires_rotation_from_config(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """OBSERVE_LOG_ROTATE_BYTES and retention keys drive the handler Observe installs."""
    log_dir = tmp_path / "logs"
    app = make_app(
        log_stdout=False,
        log_dir=str(log_dir),
        log_rotate_bytes=4096,
        log_retention_files=2,
        log_retention_min_seconds=0,
    )
    client = app.test_client()
    for _ in range(100):
        client.get("/x").close()
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, RotatingFileHandler))
    assert handler.wait_idle(10)
    rotated = rotated_files(log_dir, "app.log")
    assert len(rotated) == 2
    assert all(p.suffix == ".gz" for p in rotated)


def _child_logs_and_rotates(path: str, queue: object) -> None:
    handler = _inherited_handler
    for i in range(100):
        handler.emit(file_record(f"child {i:03d}"))
    queue.put(handler.wait_idle(10))  # type: ignore[attr-defined]


_inherited_handler: RotatingFileHandler


def test_forked_child_gets_its_own_compression_thread(tmp_path: Path) -> None:
    """After fork() (gunicorn, Celery prefork) the child's rotations are still compressed."""
    import multiprocessing

    global _inherited_handler
    _inherited_handler = RotatingFileHandler(tmp_path / "app.log", max_bytes=1000)
    _inherited_handler.setFormatter(ObserveFormatter("svc"))
    try:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_logs_and_rotates, args=(str(tmp_path), queue))
        child.start()
        assert queue.get(timeout=30) is True
        child.join(10)
        assert child.exitcode == 0
        rotated = rotated_files(tmp_path, "app.log")
        assert rotated
        assert all(p.suffix == ".gz" for p in rotated)
    finally:
        _inherited_handler.close()


def test_compression_failure_is_logged_and_logging_goes_on(
    make_handler: Callable[..., RotatingFileHandler],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rotated file that cannot be gzipped stays as it is; lines keep being written."""
    handler = make_handler(max_bytes=0, compress=True)
    handler.emit(file_record("first"))
    handler.wait_idle(10)
    # Block the temporary name the compressor writes to, so gzip fails.
    with caplog.at_level(logging.ERROR, logger="flask_observe"):
        when = time.time() + 1
        target = tmp_path / rotated_name("app.log", rotation_stamp(when))
        (tmp_path / f"{target.name}.gz.partial-{os.getpid()}").mkdir()
        rotated = handler.rotate(when)
        assert rotated == target
        assert handler.wait_idle(10)
        handler.emit(file_record("second"))
    assert rotated.exists()  # left uncompressed, not lost
    assert [x["message"] for x in read_json_lines(rotated)] == ["first"]
    assert [x["message"] for x in read_json_lines(tmp_path / "app.log")] == ["second"]
    assert any("compression/retention failed" in r.getMessage() for r in caplog.records)
