"""Retention with a minimum age, early deletions (logged, counted, in the metrics), one
compressor per rotated file, partial files left by failed compressors, and what a file that
cannot be written tells standard error. Time is a ManualClock moved by hand."""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_observe import ConfigError
from flask_observe._clock import ManualClock
from flask_observe._internal import FailureLog
from flask_observe.logging import ObserveFormatter
from flask_observe.logging.files import RetentionPolicy, RotatingFileHandler, rotated_files
from flask_observe.logging.reports import DroppedLines
from flask_observe.logging.retention import (
    FileInfo,
    compress,
    rotated_name,
    rotation_stamp,
    select_for_deletion,
)

from .conftest import read_json_lines

ROOT = Path(__file__).resolve().parent.parent
HOUR = 3600.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=time.time())


@pytest.fixture
def make_handler(
    tmp_path: Path, clock: ManualClock
) -> Iterator[Callable[..., RotatingFileHandler]]:
    handlers: list[RotatingFileHandler] = []

    def factory(**kwargs: object) -> RotatingFileHandler:
        kwargs.setdefault("quiet_seconds", 0)
        kwargs.setdefault("clock", clock)
        handler = RotatingFileHandler(tmp_path / "app.log", **kwargs)  # type: ignore[arg-type]
        handler.setFormatter(ObserveFormatter("svc"))
        assert handler.wait_idle(10)
        handlers.append(handler)
        return handler

    yield factory
    for handler in handlers:
        handler.close()


def rotated(directory: Path, written_at: float, size: int = 1000, counter: int = 0) -> Path:
    """A rotated file of ``size`` bytes last written at ``written_at``."""
    path = directory / rotated_name("app.log", rotation_stamp(written_at), counter)
    path.write_bytes(b"x" * (size - 1) + b"\n")
    os.utime(path, (written_at, written_at))
    return path


def info(name: str, size: int, mtime: float) -> FileInfo:
    return FileInfo(Path(name), size, mtime)


# -- which files go ---------------------------------------------------------------------


def test_the_file_count_never_deletes_lines_younger_than_the_minimum_age() -> None:
    """60 files, a limit of 50: of the 10 over it only those older than an hour go."""
    now = 1_800_000_000.0
    files = [info(f"f{i:02d}", 100, now - 2 * HOUR + i * 120) for i in range(60)]
    doomed, early = select_for_deletion(files, RetentionPolicy(0, 50, 0, HOUR), now, 0)
    # f00..f29 are older than an hour (2 h - 29*2 min = 62 min); the 10 oldest go.
    assert [f.path.name for f in doomed] == [f"f{i:02d}" for i in range(10)]
    assert early == []
    young = [info(f"y{i:02d}", 100, now - i) for i in range(60)]
    assert select_for_deletion(young, RetentionPolicy(0, 50, 0, HOUR), now, 0) == ([], [])
    # Without a minimum age the count applies to everything, as before.
    doomed, _ = select_for_deletion(young, RetentionPolicy(0, 50, 0, 0), now, 0)
    assert len(doomed) == 10


def test_the_disk_budget_holds_and_names_what_it_deleted_early() -> None:
    """The budget goes oldest first, past the minimum age if it must: those are 'early'."""
    now = 1_800_000_000.0
    files = [
        info("old", 4000, now - 3 * HOUR),
        info("young1", 4000, now - 600),
        info("young2", 4000, now - 300),
        info("young3", 4000, now - 60),
    ]
    doomed, early = select_for_deletion(files, RetentionPolicy(0, 0, 8_000, HOUR), now, 1000)
    assert [f.path.name for f in doomed] == ["old", "young1", "young2"]
    assert [f.path.name for f in early] == ["young1", "young2"]
    # 1000 reserved (the active file) + 16,000 > 14,000: the old file is enough.
    doomed, early = select_for_deletion(files, RetentionPolicy(0, 0, 14_000, HOUR), now, 1000)
    assert [f.path.name for f in doomed] == ["old"]
    assert early == []


def test_age_limit_deletes_old_files_but_the_minimum_age_wins_over_it() -> None:
    now = 1_800_000_000.0
    files = [info("ancient", 10, now - 20 * 86400), info("recent", 10, now - 1800)]
    doomed, _ = select_for_deletion(files, RetentionPolicy(14, 0, 0, HOUR), now, 0)
    assert [f.path.name for f in doomed] == ["ancient"]
    # max age shorter than the minimum age: the minimum age stands.
    doomed, _ = select_for_deletion(files, RetentionPolicy(0.01, 0, 0, HOUR), now, 0)
    assert [f.path.name for f in doomed] == ["ancient"]


def test_handler_keeps_young_files_beyond_the_count_and_ages_them_out_as_time_moves(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path, clock: ManualClock
) -> None:
    """Against real files and the clock: 8 young rotated files, a limit of 3: all kept;
    an hour and a half later the 5 oldest go."""
    now = clock.time()
    paths = [rotated(tmp_path, now - 600 + i * 60) for i in range(8)]
    handler = make_handler(retention=RetentionPolicy(0, 3, 0, HOUR), compress=False)
    assert handler.apply_retention() == []
    assert rotated_files(tmp_path, "app.log") == paths
    clock.advance(1.5 * HOUR)
    assert handler.apply_retention() == paths[:5]
    assert rotated_files(tmp_path, "app.log") == paths[5:]
    assert handler.early.files == 0


def test_early_deletion_is_logged_once_per_interval_and_counted(
    make_handler: Callable[..., RotatingFileHandler],
    tmp_path: Path,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Young files over the disk budget are deleted (the budget holds); a WARNING says how
    many and how large, at most once a minute with what accumulated; listeners hear each."""
    heard: list[tuple[int, int]] = []
    handler = make_handler(max_bytes=1000, retention=RetentionPolicy(0, 0, 5000, HOUR))
    handler.early.listen(lambda files, size: heard.append((files, size)))
    now = clock.time()
    first = [rotated(tmp_path, now - 300 + i, counter=i) for i in range(6)]
    with caplog.at_level(logging.WARNING, logger="flask_observe"):
        deleted = handler.apply_retention()
        # 1000 (active) + 6 x 1000 > 5000: the two oldest go, though they are 5 minutes old.
        assert deleted == first[:2]
        assert heard == [(2, 2000)]
        [warning] = [r for r in caplog.records if "retention deleted" in r.getMessage()]
        assert warning.retention_early_files == 2  # type: ignore[attr-defined]
        assert warning.retention_early_bytes == 2000  # type: ignore[attr-defined]
        assert "OBSERVE_LOG_RETENTION_MIN_SECONDS" in warning.getMessage()
        caplog.clear()
        clock.advance(10)
        rotated(tmp_path, clock.time(), counter=9)
        assert handler.apply_retention() == [first[2]]
        assert heard[-1] == (1, 1000)
        assert not [r for r in caplog.records if "retention deleted" in r.getMessage()]
        clock.advance(60)
        rotated(tmp_path, clock.time(), counter=10)
        assert handler.apply_retention() == [first[3]]
        [warning] = [r for r in caplog.records if "retention deleted" in r.getMessage()]
        assert warning.retention_early_files == 2  # the one held back + this one
    assert (handler.early.files, handler.early.bytes) == (4, 4000)
    # The budget held: the rotated files plus the active one at its rotation size.
    assert sum(p.stat().st_size for p in rotated_files(tmp_path, "app.log")) + 1000 <= 5000


def test_early_deletions_reach_the_metrics(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """With metrics on, /metrics counts what retention deleted early (files and bytes)."""
    pytest.importorskip("prometheus_client")
    log_dir = tmp_path / "logs"
    app = make_app(
        "early",
        log_stdout=False,
        log_dir=str(log_dir),
        log_rotate_bytes=1000,
        log_retention_bytes=3000,
        metrics_enabled=True,
    )
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, RotatingFileHandler))
    assert handler.wait_idle(10)
    now = time.time()
    for i in range(4):
        rotated(log_dir, now - 60 + i, counter=i)
    handler.apply_retention()
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "flask_observe_log_files_deleted_early_total 2.0" in text
    assert "flask_observe_log_bytes_deleted_early_total 2000.0" in text


def test_rotation_size_must_leave_room_in_the_budget(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigError, match="OBSERVE_LOG_ROTATE_BYTES"):
        make_app(log_stdout=False, log_rotate_bytes=2000, log_retention_bytes=2000)


# -- one compressor per file, and what failed ones leave ---------------------------------

#: Another process's compressor at work on a file: it holds the file's flock.
_HOLD_CLAIM = """
import fcntl, sys
with open(sys.argv[1], "rb") as file:
    fcntl.flock(file.fileno(), fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.mark.realtime
def test_a_file_another_process_is_compressing_is_left_to_it(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path, clock: ManualClock
) -> None:
    """A second process holds the claim on a rotated file (as its compressor would): this
    one leaves the file alone and writes no partial file; once that process is gone (it died
    without finishing), this one compresses it."""
    handler = make_handler(retention=RetentionPolicy(0, 0, 0, 0))
    path = rotated(tmp_path, clock.time() - 60)
    other = subprocess.Popen(
        [sys.executable, "-c", _HOLD_CLAIM, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline() == b"held\n"
        handler.maintain()
        assert path.exists()
        assert not path.with_name(path.name + ".gz").exists()
        assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []
    finally:
        other.kill()
        other.wait(10)
    handler.maintain()
    assert not path.exists()
    assert gzip.decompress(path.with_name(path.name + ".gz").read_bytes()).endswith(b"x\n")


def test_a_gz_of_the_same_name_is_never_replaced_the_file_moves_to_a_free_name(
    tmp_path: Path,
) -> None:
    """Where the rotation lock could not be had, a rotation may take a name again whose
    compression had just ended: compressing the new file must not replace the first's .gz.
    It moves to the next free counter of its time instead, and is compressed from there."""
    now = time.time()
    first = tmp_path / rotated_name("app.log", rotation_stamp(now))
    first.write_bytes(b"first\n")
    assert compress(first) == first.with_name(first.name + ".gz")
    (tmp_path / rotated_name("app.log", rotation_stamp(now), 1)).write_bytes(b"next\n")
    first.write_bytes(b"again\n")  # the name taken again
    assert compress(first) is None
    assert gzip.decompress(first.with_name(first.name + ".gz").read_bytes()) == b"first\n"
    assert not first.exists()
    moved = tmp_path / rotated_name("app.log", rotation_stamp(now), 2)
    assert moved.read_bytes() == b"again\n"
    assert compress(moved) is not None
    contents = [
        gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        for p in rotated_files(tmp_path, "app.log")
    ]
    assert contents == [b"first\n", b"next\n", b"again\n"]
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


def test_a_file_its_gz_holds_already_is_removed(tmp_path: Path) -> None:
    """A compressor that died after putting the .gz in place and before removing the file
    left both: the next compression finds the .gz holding exactly the file, and removes the
    file (not a copy under another name)."""
    path = rotated(tmp_path, time.time() - 60)
    target = path.with_name(path.name + ".gz")
    target.write_bytes(gzip.compress(path.read_bytes()))
    assert compress(path) == target
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert gzip.decompress(target.read_bytes()) == b"x" * 999 + b"\n"


@pytest.mark.realtime
def test_partial_files_of_gone_compressors_are_removed_and_live_ones_kept(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path, clock: ManualClock
) -> None:
    """Retention removes ``*.gz.partial-<pid>`` files whose process is gone, and those left
    untouched for ten minutes whatever their pid; a live compressor's is kept (and counted
    against the budget)."""
    base = rotated_name("app.log", rotation_stamp(clock.time() - 60)) + ".gz.partial-"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True
    )
    dead_pid = int(gone.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    handler = make_handler(max_bytes=1000, retention=RetentionPolicy(0, 0, 0, 0))
    try:
        dead = tmp_path / f"{base}{dead_pid}"
        alive = tmp_path / f"{base}{live.pid}"
        stale = tmp_path / (
            rotated_name("app.log", rotation_stamp(clock.time() - 30)) + f".gz.partial-{live.pid}"
        )
        for path in (dead, alive, stale):
            path.write_bytes(b"\x1f\x8b" + b"z" * 998)
        os.utime(stale, (clock.time() - 700, clock.time() - 700))
        os.utime(alive, (clock.time() - 5, clock.time() - 5))
        removed = handler.apply_retention()
        assert sorted(removed) == sorted([dead, stale])
        assert alive.exists()
        assert not dead.exists()
        assert not stale.exists()
        # The live partial counts: 1000 (active) + 1000 (partial) + 1000 (rotated) > 2500.
        handler.retention = RetentionPolicy(0, 0, 2500, 0)
        kept = rotated(tmp_path, clock.time() - 10)
        assert handler.apply_retention() == [kept]
    finally:
        live.kill()
        live.wait(10)


@pytest.mark.realtime
def test_a_compressor_that_fails_removes_its_partial_file(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path, clock: ManualClock
) -> None:
    """A write error while compressing (the file system says EFBIG: a size limit, as a full
    disk would say ENOSPC) leaves the rotated file as it was and no partial file."""
    handler = make_handler(retention=RetentionPolicy(0, 0, 0, 0))
    path = rotated(tmp_path, clock.time() - 60, size=200_000)
    path.write_bytes(os.urandom(200_000))  # does not compress: the gzip output is large
    os.utime(path, (clock.time() - 60, clock.time() - 60))
    script = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, resource.RLIM_INFINITY))
from flask_observe.logging.retention import compress
from pathlib import Path
try:
    compress(Path({str(path)!r}))
except OSError as exc:
    print(exc.errno)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert done.stdout.strip() == str(errno.EFBIG).encode()
    assert path.stat().st_size == 200_000
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []
    assert handler.maintain() is None
    assert path.with_name(path.name + ".gz").exists()


# -- write failures ------------------------------------------------------------------------


def test_failure_log_says_once_per_interval_with_the_count_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    failures = FailureLog(60, clock=clock)
    with caplog.at_level(logging.ERROR, logger="flask_observe"):
        for _ in range(5):
            try:
                raise OSError("boom")
            except OSError:
                failures("exporting")
            clock.advance(10)
        assert len(caplog.records) == 1
        clock.advance(20)  # 70 s after the first
        try:
            raise OSError("boom")
        except OSError:
            failures("exporting")
    assert len(caplog.records) == 2
    assert caplog.records[1].suppressed_since_last == 4  # type: ignore[attr-defined]


def test_dropped_lines_are_told_once_per_interval_with_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,000 failed lines in a minute: one message at the first, the count in the next one
    (a minute later); that writing works again is said once, with what was dropped."""
    clock = ManualClock()
    dropped = DroppedLines(tmp_path / "app.log", clock, interval=60)
    full = OSError(errno.ENOSPC, "No space left on device")
    for _ in range(1000):
        dropped.failed(full)
        clock.advance(0.05)
    messages = capsys.readouterr().err.splitlines()
    assert len(messages) == 1
    assert "1 log line(s) dropped" in messages[0]
    assert "No space left on device" in messages[0]
    clock.advance(20)  # 70 s after the first failure
    dropped.failed(full)
    dropped.written()  # too soon after that message: said later
    messages = capsys.readouterr().err.splitlines()
    assert len(messages) == 1
    assert "1000 log line(s) dropped since the last message" in messages[0]
    assert dropped.failing
    clock.advance(61)
    dropped.written()
    [message] = capsys.readouterr().err.splitlines()
    assert "works again" in message
    assert "1001 since it failed" in message
    assert not dropped.failing


_SHORT_WRITE = """
import os, resource, signal, sys
from flask_observe.logging.files import RotatingFileHandler
from flask_observe.logging import ObserveFormatter
import logging
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
handler = RotatingFileHandler(sys.argv[1], max_bytes=0, compress=False)
handler.setFormatter(ObserveFormatter("svc"))
pad = "p" * 600
def line(n):
    handler.emit(logging.makeLogRecord({"name": "t", "msg": f"line {n}", "levelno": 20,
                                        "levelname": "INFO", "pad": pad}))
line(1)
# Room for about 1.3 more lines: line 2 fits, line 3 is cut short, then refused.
limit = os.path.getsize(sys.argv[1]) + 1000
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
line(2)
line(3)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
line(4)
handler.close()
"""


@pytest.mark.realtime
def test_a_line_cut_short_is_removed_and_the_next_starts_clean(tmp_path: Path) -> None:
    """A real short write (the file size limit, as a full disk does it): the fragment is
    taken back, the next line is whole, and standard error hears it once."""
    path = tmp_path / "app.log"
    done = subprocess.run(
        [sys.executable, "-c", _SHORT_WRITE, str(path)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    # Line 3 is lost (the file took only a part of it) and that part was taken back.
    assert [x["message"] for x in read_json_lines(path)] == ["line 1", "line 2", "line 4"]
    complaints = done.stderr.decode().splitlines()
    assert len(complaints) <= 2, complaints
    assert "File too large" in complaints[0]


def test_a_fragment_another_process_wrote_after_is_kept_apart_by_a_newline(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path
) -> None:
    """If another process appended after our fragment it cannot be taken back: our next
    line starts with a line break, so the fragment stays a (bad) line of its own and the
    next record is whole."""
    from flask_observe.logging.files import _cut_fragment

    path = tmp_path / "frag.log"
    ours = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    theirs = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(ours, b'{"torn":')
        os.write(theirs, b'{"theirs":1}\n')
        assert _cut_fragment(ours, 8) is False
        assert path.read_bytes() == b'{"torn":{"theirs":1}\n'
        os.write(ours, b"tail")
        assert _cut_fragment(ours, 4) is True
        assert path.read_bytes() == b'{"torn":{"theirs":1}\n'
    finally:
        os.close(ours)
        os.close(theirs)
    handler = make_handler(max_bytes=0, compress=False)
    handler.emit(logging.makeLogRecord({"name": "t", "msg": "one", "levelno": 20}))
    handler._torn = True  # what a failed cut leaves
    handler.emit(logging.makeLogRecord({"name": "t", "msg": "two", "levelno": 20}))
    raw = (tmp_path / "app.log").read_bytes().split(b"\n")
    assert raw[1] == b""  # the separating line break
    assert b'"message":"two"' in raw[2]
    handler.emit(logging.makeLogRecord({"name": "t", "msg": "three", "levelno": 20}))
    assert (tmp_path / "app.log").read_bytes().count(b"\n\n") == 1


def test_signals_and_limits_are_available() -> None:
    """The short-write tests need RLIMIT_FSIZE and SIGXFSZ (Linux has both)."""
    assert hasattr(resource, "RLIMIT_FSIZE")
    assert hasattr(signal, "SIGXFSZ")


# -- errors kept longer than the rest (OBSERVE_LOG_RETENTION_ERROR_DAYS) --------------------

DAY = 86400.0


def _write_day(handler: RotatingFileHandler, day: int, start: float, clock: ManualClock) -> None:
    """A day of lines (info, warning, error, critical), then a rotation (the clock moved on a
    little: the rotated file's real modification time must be behind it to be compressed)."""
    formatter = ObserveFormatter("svc")
    created = start + day * DAY
    for i, level in enumerate(["info", "warning", "error", "info", "critical", "debug"]):
        line = formatter.format_fields(created + i, level, "app", f"day {day} line {i}", {})
        handler.write_line(line, created + i)
    handler.rotate(created + 10)
    clock.advance(2)
    handler.maintain()
    assert handler.wait_idle(10)


def test_errors_outlive_the_rest_of_a_file_and_go_at_their_own_age(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path, clock: ManualClock
) -> None:
    """Retention 30 days, errors 90 (the clock moved by hand, file times set as written): a
    file past 30 days keeps only its error and critical lines, as ``….errors.log.gz`` with its
    modification time; a younger one stays whole; at 90 days the errors go too. Pruned files
    do not count against the file limit (1 here: without that the old one would go)."""
    handler = make_handler(retention=RetentionPolicy(30, 1, 0, HOUR, 90))
    for day in (0, 40):
        _write_day(handler, day, clock.time() - 50 * DAY, clock)
    now = clock.time()
    files = rotated_files(tmp_path, "app.log")
    assert len(files) == 2
    for path, age in zip(files, (45, 5), strict=True):
        os.utime(path, (now - age * DAY, now - age * DAY))
    handler.apply_retention()
    first, second = rotated_files(tmp_path, "app.log")
    assert first.name.endswith(".errors.log.gz")
    assert not second.name.endswith(".errors.log.gz")
    kept = [json.loads(x) for x in gzip.decompress(first.read_bytes()).splitlines()]
    assert [(r["level"], r["message"]) for r in kept] == [
        ("error", "day 0 line 2"),
        ("critical", "day 0 line 4"),
    ]
    assert first.stat().st_mtime == pytest.approx(now - 45 * DAY)
    assert len(gzip.decompress(second.read_bytes()).splitlines()) == 6
    # 30 days on: the second (35 days old) is pruned too; the first (75) is still kept.
    clock.advance(30 * DAY)
    handler.apply_retention()
    names = [p.name for p in rotated_files(tmp_path, "app.log")]
    assert len(names) == 2
    assert all(n.endswith(".errors.log.gz") for n in names)
    clock.advance(16 * DAY)  # the first is 91 days old
    handler.apply_retention()
    (left,) = rotated_files(tmp_path, "app.log")
    assert left.name == names[1]


def test_without_error_retention_a_file_goes_whole_at_its_age(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path, clock: ManualClock
) -> None:
    start = clock.time()
    handler = make_handler(retention=RetentionPolicy(30, 0, 0, HOUR))
    _write_day(handler, 0, start - 40 * DAY, clock)
    (path,) = rotated_files(tmp_path, "app.log")
    os.utime(path, (start - 40 * DAY, start - 40 * DAY))
    handler.apply_retention()
    assert rotated_files(tmp_path, "app.log") == []


def test_error_days_must_be_longer_than_the_retention(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigError, match="OBSERVE_LOG_RETENTION_ERROR_DAYS"):
        make_app(log_stdout=False, log_retention_days=30, log_retention_error_days=20)
    with pytest.raises(ConfigError, match="must not be 0"):
        make_app(log_stdout=False, log_retention_days=0, log_retention_error_days=20)


def test_the_log_viewer_searches_pruned_files_with_the_rest_as_one_log(
    make_handler: Callable[..., RotatingFileHandler], tmp_path: Path, clock: ManualClock
) -> None:
    """After pruning, a search of every level, oldest first, returns the old file's errors
    then the recent file's lines, in time order, from one stream; a level filter finds the
    old errors next to the new ones."""
    from flask_observe.logviewer.query import parse_query
    from flask_observe.logviewer.search import Limits, run_search
    from flask_observe.logviewer.signing import Signer
    from flask_observe.logviewer.store import LogStore

    start = clock.time()
    handler = make_handler(retention=RetentionPolicy(30, 0, 0, HOUR, 90))
    for day in (0, 40):
        _write_day(handler, day, start - 45 * DAY, clock)
    for path, day in zip(rotated_files(tmp_path, "app.log"), (0, 40), strict=True):
        written = start - 45 * DAY + day * DAY + 10
        os.utime(path, (written, written))
    handler.apply_retention()
    assert rotated_files(tmp_path, "app.log")[0].name.endswith(".errors.log.gz")
    signer = Signer(b"retention-test-key-0123456789abc", "token")
    store = LogStore(tmp_path, ("app.log",))
    assert {f.stream for f in store.files()} == {"app.log"}

    def search(**args: str) -> list[str]:
        query = parse_query(
            {k: [v] for k, v in {"order": "oldest", **args}.items()},
            max_results=1000,
            max_pattern_length=256,
            signer=signer,
            now=clock.time(),
        )
        page = run_search(store, query, Limits(), signer=signer)
        return [r["record"]["message"] for r in page.results]

    everything = search(since="60d")
    assert everything == ["day 0 line 2", "day 0 line 4"] + [f"day 40 line {i}" for i in range(6)]
    assert search(level="error", since="60d") == [
        "day 0 line 2",
        "day 0 line 4",
        "day 40 line 2",
        "day 40 line 4",
    ]
