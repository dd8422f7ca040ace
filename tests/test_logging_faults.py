"""What reaches the log files when processes share them, when an outsider floods them and when
the disk fills: proven against real gunicorn workers, a real werkzeug server, real writer
processes and a real (2 MiB tmpfs) file system."""

from __future__ import annotations

import collections
import contextlib
import gzip
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from flask import Flask

from flask_observe.logging.files import RotatingFileHandler, rotated_files

from .conftest import REQUIRE_SERVICES, LiveServer
from .test_multiprocess import Gunicorn

#: Real time, real servers and processes: CI runs these in a step of their own.
pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parent.parent


def log_lines(directory: Path, name: str = "app.log") -> list[bytes]:
    """Every line of the active file and of each rotated one, gzipped or not, oldest first."""
    out: list[bytes] = []
    for path in [*rotated_files(directory, name), directory / name]:
        try:
            data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        except FileNotFoundError:  # compressed since the listing
            data = gzip.decompress(path.with_name(path.name + ".gz").read_bytes())
        out += [line for line in data.split(b"\n") if line]
    return out


def disk_use(directory: Path) -> int:
    """Bytes of every file in ``directory`` (what retention budgets: their sizes)."""
    total = 0
    for entry in os.scandir(directory):
        with contextlib.suppress(FileNotFoundError):
            total += entry.stat(follow_symlinks=False).st_size
    return total


# -- several processes rotating one file ------------------------------------------------


def _hit(port: int, ids: list[str]) -> list[str]:
    """Send one request per ID to 127.0.0.1:port (a new connection each: gunicorn's sync
    workers close after every response); returns the IDs that got a 200."""
    answered = []
    for request_id in ids:
        for attempt in range(5):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                    sock.sendall(
                        f"GET /hit HTTP/1.0\r\nX-Request-ID: {request_id}\r\n\r\n".encode()
                    )
                    reply = b""
                    while chunk := sock.recv(65536):
                        reply += chunk
                break
            except OSError:  # the listen backlog was full for a moment
                if attempt == 4:
                    raise
                time.sleep(0.05)
        if reply.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
            answered.append(request_id)
    return answered


@pytest.mark.parametrize(
    ("rotate_bytes", "requests_sent"), [(4096, 50_000), (16_384, 10_000), (65_536, 10_000)]
)
def test_workers_sharing_a_rotating_file_lose_and_repeat_no_line(
    tmp_path: Path, rotate_bytes: int, requests_sent: int
) -> None:
    """Four gunicorn workers log every request to one file rotating at 4, 16 or 64 KiB: every
    request's access line is in the active, rotated or gzipped files exactly once, and no
    worker printed a traceback. Before the rotation lock and the link-based move, two workers
    renamed the file onto one rotated name (the first's file overwritten, hundreds of lines
    gone at 4 KiB) or failed with FileNotFoundError and lost the line."""
    log_dir = tmp_path / "logs"
    env = {
        "FLASK_OBSERVE_LOG_DIR": str(log_dir),
        "FLASK_OBSERVE_LOG_ROTATE_BYTES": str(rotate_bytes),
        # No retention: every line must stay to be counted.
        "FLASK_OBSERVE_LOG_RETENTION_FILES": "0",
        "FLASK_OBSERVE_LOG_RETENTION_BYTES": "0",
        "FLASK_OBSERVE_LOG_RETENTION_DAYS": "0",
    }
    server = Gunicorn(tmp_path, "tests.apps.logfile_app:app", "--workers", "4", env=env)
    try:
        ids = [f"r{i:06d}-{rotate_bytes}" for i in range(requests_sent)]
        chunks = [ids[i::8] for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            answered = [rid for part in pool.map(_hit, [server.port] * 8, chunks) for rid in part]
    finally:
        server.stop()
    assert len(answered) == requests_sent
    seen: collections.Counter[str] = collections.Counter()
    for raw in log_lines(log_dir):
        line = json.loads(raw)
        if line.get("logger") == "flask_observe.access" and line["path"] == "/hit":
            seen[line["correlation_id"]] += 1  # (not the helper's start-up probe)
    missing = set(ids) - set(seen)
    repeated = {rid: n for rid, n in seen.items() if n > 1}
    assert not missing, f"{len(missing)} of {requests_sent} access lines lost"
    assert not repeated, f"{len(repeated)} lines written more than once"
    assert set(seen) == set(ids)
    # Many rotations happened (at 4 KiB, 1,700 in one run: files overshoot the size by the
    # second of lines other workers write before they notice a rotation).
    assert len(rotated_files(log_dir, "app.log")) >= 10
    output = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in output, output[-3000:]


# -- a flood of maximal request lines ---------------------------------------------------

#: One flooding client (run as its own process): for ``seconds``, request lines as long as
#: werkzeug takes (64 KiB), three of four a valid request with a unique ``X-Request-ID``, one
#: a malformed line (werkzeug's "Bad request syntax", which echoes the line) starting with a
#: unique token. Paths are random base64, which compresses poorly. Prints what was answered.
_FLOOD_CLIENT = r"""
import base64, json, os, socket, sys, time
port, seconds, name = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
pool = base64.urlsafe_b64encode(os.urandom(900_000)).decode()
answered, bad, n = [], [], 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    n += 1
    start = (n * 7919) % (len(pool) - 70_000)
    if n % 4:
        rid = f"{name}-{n}"
        head = f"GET /{pool[start:start + 65_500]} HTTP/1.1\r\n"
        data = head + f"Host: x\r\nX-Request-ID: {rid}\r\nConnection: close\r\n\r\n"
    else:
        rid = f"bad-{name}-{n}"
        data = f"GET /{rid}-{pool[start:start + 65_400]} x HTTP/1.1\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(data.encode())
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
    except OSError:
        continue
    status = reply[9:12]
    if status == b"404" and n % 4:
        answered.append(rid)
    elif status == b"400" and not n % 4:
        bad.append(rid)
print(json.dumps({"answered": answered, "bad": bad}))
"""


def test_a_flood_of_maximal_request_lines_leaves_the_last_hour_findable_within_budget(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """Four clients send 64 KiB request lines (valid ones and malformed ones) for 30 s to a
    real werkzeug server rotating at 64 KiB with the default 50-file limit: every line of the
    run (all of it younger than the one-hour minimum age) is still in the files, no line is
    longer than a few KiB, and the directory never holds more than the 32 MiB budget.

    Before: each access line carried the path twice (130 kB), werkzeug's error line the whole
    request line, and the file count deleted the earliest lines within seconds."""
    log_dir = tmp_path / "logs"
    budget = 32 * 1024 * 1024
    app = make_app(
        "flooded",
        log_stdout=False,
        log_dir=str(log_dir),
        log_rotate_bytes=64 * 1024,
        log_retention_bytes=budget,
    )

    @app.get("/canary")
    def canary() -> str:
        logging.getLogger("host").info("canary line before the flood")
        return "ok"

    most = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, disk_use(log_dir))
            stop.wait(0.1)

    root = logging.getLogger()
    foreign = [h for h in root.handlers if not hasattr(h, "write_line")]  # pytest's capture
    for handler in foreign:  # as in production: the access line takes the direct path
        root.removeHandler(handler)
    try:
        answered, bad = _flood(app, log_dir, stop, watch)
    finally:
        for handler in foreign:
            root.addHandler(handler)

    assert len(answered) > 1000, len(answered)
    assert len(bad) > 300, len(bad)
    lines = log_lines(log_dir)
    access_ids = set()
    bad_seen = set()
    canaries = 0
    for raw in lines:
        line = json.loads(raw)
        if line["logger"] == "flask_observe.access":
            access_ids.add(line.get("correlation_id"))
        elif line["logger"] == "werkzeug" and "Bad request syntax" in line["message"]:
            token = line["message"].split("GET /", 1)[1].split("-", 3)
            bad_seen.add("-".join(token[:3]))
        elif line["message"] == "canary line before the flood":
            canaries += 1
    assert canaries == 1
    assert "canary-1" in access_ids
    lost = answered - access_ids
    assert not lost, f"{len(lost)} of {len(answered)} access lines gone"
    lost_bad = bad - bad_seen
    assert not lost_bad, f"{len(lost_bad)} of {len(bad)} malformed-request lines gone"
    longest = max(len(raw) for raw in lines)
    assert longest < 6 * 1024, longest
    assert most <= budget, most
    # More files than the count limit: the minimum age, not luck, kept the early lines.
    assert len(rotated_files(log_dir, "app.log")) > 50
    files = [h for h in logging.getLogger().handlers if isinstance(h, RotatingFileHandler)]
    assert files[0].early.files == 0
    print(
        f"flood: {len(answered)} requests + {len(bad)} malformed lines answered, all found;"
        f" {len(rotated_files(log_dir, 'app.log'))} rotated files, longest line {longest} B,"
        f" most on disk {most} B of {budget}"
    )


def _flood(
    app: Flask, log_dir: Path, stop: threading.Event, watch: Callable[[], None]
) -> tuple[set[str], set[str]]:
    """Four flooding clients for 30 s against ``app`` on a real werkzeug server; returns the
    request IDs answered 404 and the malformed-line tokens answered 400."""
    with LiveServer(app) as server:
        canary = requests.get(
            server.url + "/canary", headers={"X-Request-ID": "canary-1"}, timeout=5
        )
        assert canary.status_code == 200
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        clients = [
            subprocess.Popen(
                [sys.executable, "-c", _FLOOD_CLIENT, str(server.port), "30", f"c{i}"],
                stdout=subprocess.PIPE,
            )
            for i in range(4)
        ]
        results = [json.loads(proc.communicate(timeout=120)[0]) for proc in clients]
        stop.set()
        watcher.join(5)
    answered = {rid for result in results for rid in result["answered"]}
    bad = {rid for result in results for rid in result["bad"]}
    return answered, bad


# -- a full disk --------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs (needs root or CAP_SYS_ADMIN, as in CI's container)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        message = f"cannot mount a 2 MiB tmpfs: {done.stderr.decode().strip()}"
        if REQUIRE_SERVICES:
            pytest.fail(message + "; OBSERVE_REQUIRE_SERVICES is set", pytrace=False)
        pytest.skip(message)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


#: One writer process: lines of 100 B to 3 kB (random hex, so gzip has work), about 30 a
#: second, to ``<dir>/app.log`` through Observe's file handler on the root logger, rotating at
#: 64 KiB and keeping 1 MB, until ``<stop>`` exists. Prints its last sequence number.
_DISK_WRITER = r"""
import json, logging, os, random, sys, time
from flask_observe.logging import ObserveFormatter
from flask_observe.logging.files import RetentionPolicy, RotatingFileHandler
directory, name, stop = sys.argv[1], sys.argv[2], sys.argv[3]
limits = {"max_age_days": 0, "max_files": 0, "max_total_bytes": 1_000_000}
if "min_age_seconds" in RetentionPolicy.__dataclass_fields__:
    limits["min_age_seconds"] = 0  # this test is about the disk, not the minimum age
handler = RotatingFileHandler(
    os.path.join(directory, "app.log"), max_bytes=64 * 1024, retention=RetentionPolicy(**limits)
)
handler.setFormatter(ObserveFormatter("disk"))
root = logging.getLogger()
root.addHandler(handler)
root.setLevel(logging.INFO)
log = logging.getLogger("writer")
seq = 0
while not os.path.exists(stop):
    seq += 1
    pad = os.urandom(random.randint(50, 1500)).hex()
    log.info("line", extra={"writer": name, "seq": seq, "pad": pad})
    time.sleep(0.033)
print(json.dumps({"last": seq}))
"""


def _fill(directory: Path) -> Path:
    """Write a file into ``directory`` until the file system is full."""
    filler = directory / "filler.bin"
    block = os.urandom(64 * 1024)
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(block)
        except OSError:
            pass
    return filler


def test_a_full_disk_tears_no_record_floods_no_stderr_and_leaves_no_partial_file(
    small_disk: Path, tmp_path: Path
) -> None:
    """Three writer processes share one log on a 2 MiB tmpfs that is filled (by another
    file) and freed four times, 3.5 s full each time — long enough for rotated files to come
    due for compression while there is no room. Afterwards: every line in every file, active,
    rotated or gzipped, is a whole JSON record (a short write's fragment never glued to the
    next line); each writer said on stderr a few times in all that it dropped lines, with the
    count; each writer's last line (written after space came back) is there; and once the
    writers are gone no ``*.gz.partial-<pid>`` file is left.

    Before: a traceback on stderr per dropped line, torn records glued to the next line, and
    the partial files of failed compressors left behind for good."""
    stop = tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    errors = [(tmp_path / f"w{i}.stderr").open("wb") for i in range(3)]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _DISK_WRITER, str(small_disk), f"w{i}", str(stop)],
            stdout=subprocess.PIPE,
            stderr=errors[i],  # a file: a pipe nobody reads would block the writer
            env=env,
        )
        for i in range(3)
    ]
    try:
        time.sleep(2.0)
        for _ in range(4):
            filler = _fill(small_disk)
            time.sleep(3.5)
            filler.unlink()
            time.sleep(1.5)
        stop.touch()
        outputs = [proc.communicate(timeout=60)[0] for proc in writers]
    finally:
        for proc in writers:
            if proc.poll() is None:
                proc.kill()
        for file in errors:
            file.close()
    stderr = [(tmp_path / f"w{i}.stderr").read_text() for i in range(3)]
    assert all(proc.returncode == 0 for proc in writers), [err[-2000:] for err in stderr]
    # A later start (the writers are gone) cleans up after them.
    cleaner = RotatingFileHandler(small_disk / "app.log", max_bytes=64 * 1024)
    try:
        assert cleaner.wait_idle(30)
    finally:
        cleaner.close()
    leftovers = sorted(p.name for p in small_disk.iterdir() if ".partial-" in p.name)
    assert leftovers == []
    records: dict[str, set[int]] = collections.defaultdict(set)
    torn = []
    for raw in log_lines(small_disk):
        try:
            line = json.loads(raw)
        except ValueError:
            torn.append(raw[:120])
            continue
        if line["message"] == "line":
            assert line["seq"] not in records[line["writer"]], "a line written twice"
            records[line["writer"]].add(line["seq"])
    assert torn == []
    for index, (out, err) in enumerate(zip(outputs, stderr, strict=True)):
        name = f"w{index}"
        last = json.loads(out)["last"]
        assert last in records[name], f"{name}'s last line ({last}) is missing"
        complaints = err.splitlines()
        assert 1 <= len(complaints) <= 5, complaints[:10]
        assert "log line(s) dropped" in complaints[0]
        assert "No space left on device" in complaints[0]
    written = sum(len(seqs) for seqs in records.values())
    sent = sum(json.loads(out)["last"] for out in outputs)
    assert written < sent  # the disk really was full: some lines were dropped
    stderr_lines = [len(err.splitlines()) for err in stderr]
    print(f"disk full: {written} of {sent} lines kept, 0 torn, stderr lines {stderr_lines}")
