"""Log viewer files: exactly the files the logging pipeline writes, and no way out of the log
directory — traversal, encodings, symlinks, siblings, special files — for any name."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_observe.logviewer.readers import GzipReader, PlainReader, ReadError
from flask_observe.logviewer.store import BadName, LogStore, NoSuchFile

EVIL = b"EVIL-SECRET-OUTSIDE-THE-LOG-DIRECTORY\n"
ROTATED = "app.20260101T000000-000.log"
GZIPPED = "app.20250101T000000-000.log.gz"


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    """``logs/`` with an active, a rotated and a gzipped file, plus every trap: a sibling
    ``logs_evil/`` (same prefix), symlinks out (one named like a rotated file), a FIFO and a
    directory named like rotated files, and files of other streams."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(b'{"timestamp":"2026-01-02T00:00:00.000Z","message":"now"}\n')
    (logs / ROTATED).write_bytes(b'{"timestamp":"2026-01-01T00:00:00.000Z","message":"old"}\n')
    with gzip.open(logs / GZIPPED, "wb") as fh:
        fh.write(b'{"timestamp":"2025-01-01T00:00:00.000Z","message":"older"}\n')
    evil = tmp_path / "logs_evil"
    evil.mkdir()
    (evil / "secret.log").write_bytes(EVIL)
    (evil / "app.log").write_bytes(EVIL)
    os.symlink("/etc/passwd", logs / "app.20260102T000000-000.log")
    os.symlink(evil / "secret.log", logs / "app.20260103T000000-000.log")
    os.symlink("../logs_evil/secret.log", logs / "evil.log")
    os.mkfifo(logs / "app.20260104T000000-000.log")
    (logs / "app.20260105T000000-000.log").mkdir()
    (logs / "notes.txt").write_bytes(b"not a log\n")
    (logs / "worker.log").write_bytes(b"another stream, not configured\n")
    return logs


def test_listing_is_the_active_file_and_its_rotated_files_only(logdir: Path) -> None:
    """Symlinks (in or out), FIFOs, directories and other streams are not listed."""
    files = LogStore(logdir, ("app.log",)).files()
    assert [f.name for f in files] == [GZIPPED, ROTATED, "app.log"]  # oldest first
    gz, rotated, active = files
    assert (gz.compressed, gz.active, rotated.compressed, active.active) == (
        True,
        False,
        False,
        True,
    )
    assert rotated.rotated_at is not None
    assert gz.rotated_at is not None
    assert gz.rotated_at < rotated.rotated_at
    assert all(f.path.parent == logdir.resolve() for f in files)


def test_an_active_file_that_is_a_symlink_out_is_not_listed(tmp_path: Path) -> None:
    """``app.log -> /etc/passwd`` (or to a sibling) is neither listed nor resolvable."""
    logs = tmp_path / "logs"
    logs.mkdir()
    os.symlink("/etc/passwd", logs / "app.log")
    store = LogStore(logs, ("app.log",))
    assert store.files() == []
    with pytest.raises(NoSuchFile):
        store.resolve("app.log")


def test_a_symlinked_log_directory_is_followed_once(tmp_path: Path) -> None:
    """The configured directory may itself be a symlink (``/var/log/app -> /data/logs``)."""
    real = tmp_path / "data"
    real.mkdir()
    (real / "app.log").write_bytes(b"line\n")
    os.symlink(real, tmp_path / "link")
    store = LogStore(tmp_path / "link", ("app.log",))
    assert store.resolve("app.log").path == (real / "app.log").resolve()


CORPUS = [
    "",
    ".",
    "..",
    "../logs_evil/secret.log",
    "../logs_evil/app.log",
    "..%2flogs_evil%2fsecret.log",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "..%c0%af..%c0%afetc%c0%afpasswd",
    "/etc/passwd",
    "//etc/passwd",
    "\\etc\\passwd",
    "..\\logs_evil\\secret.log",
    "app.log\x00.txt",
    "app.log%00",
    "app.log/",
    "app.log/.",
    "./app.log",
    "logs/../app.log",
    "....//....//etc/passwd",
    "..;/etc/passwd",
    "\uff0e\uff0e\uff0fetc\uff0fpasswd",
    "app.20260102T000000-000.log",  # symlink to /etc/passwd named like a rotated file
    "app.20260103T000000-000.log",  # symlink to the sibling directory
    "evil.log",
    "app.20260104T000000-000.log",  # a FIFO: opening it must not hang
    "app.20260105T000000-000.log",  # a directory
    "notes.txt",
    "worker.log",
    "logs_evil",
    "~/.ssh/id_rsa",
    "app.log\n",
    "a" * 300,
]


@pytest.mark.parametrize("name", CORPUS)
def test_fixed_corpus_is_refused(logdir: Path, name: str) -> None:
    """Each known attack is a BadName (400) or NoSuchFile (404), never a file."""
    with pytest.raises((BadName, NoSuchFile)):
        LogStore(logdir, ("app.log",)).resolve(name)


_FRAGMENTS = [
    "..",
    ".",
    "/",
    "\\",
    "%2e",
    "%2f",
    "%5c",
    "%00",
    "\x00",
    "%252e",
    "%c0%ae",
    "\u2024",
    "\uff0e",
    "\uff0f",
    "~",
    ":",
    ";",
    "\n",
    " ",
    "app",
    "app.log",
    ".log",
    ".gz",
    ROTATED,
    GZIPPED,
    "app.20260102T000000-000.log",
    "app.20260103T000000-000.log",
    "evil.log",
    "logs",
    "logs_evil",
    "secret.log",
    "etc",
    "passwd",
]
NAMES = st.one_of(
    st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=8).map("".join),
    st.text(max_size=40),
    st.tuples(
        st.sampled_from(["/", "../", "..\\", "/etc/", "./", "%2e%2e%2f", "logs/"]),
        st.sampled_from(_FRAGMENTS),
    ).map("".join),
)


def test_no_generated_name_escapes(logdir: Path) -> None:
    """Property: of at least 3000 generated names, none resolves to anything but a listed
    file directly inside the canonical log directory; none is the outside content."""
    store = LogStore(logdir, ("app.log",))
    base = logdir.resolve()
    listed = {f.name: f.path for f in store.files()}
    tried: list[str] = []
    escapes: list[str] = []
    found_ok: list[str] = []

    @settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(NAMES)
    def check(name: str) -> None:
        tried.append(name)
        try:
            found = store.resolve(name)
        except (BadName, NoSuchFile):
            return
        ok = (
            found.path.parent == base
            and found.path.is_relative_to(base)
            and listed.get(found.name) == found.path
            and EVIL not in found.path.read_bytes()
        )
        (found_ok if ok else escapes).append(name)

    check()
    assert len(tried) >= 3000
    assert escapes == []
    assert found_ok  # the generator does reach the real files too


def test_open_refuses_a_file_swapped_for_a_symlink_after_listing(logdir: Path) -> None:
    """Check-then-open race: the file is replaced by a symlink after it was resolved."""
    store = LogStore(logdir, ("app.log",))
    listed = store.resolve(ROTATED)
    os.unlink(logdir / ROTATED)
    os.symlink("/etc/passwd", logdir / ROTATED)
    with pytest.raises(ReadError):
        store.open(listed)


def test_plain_reader_chunks_are_whole_lines_both_ways(tmp_path: Path) -> None:
    """With tiny windows, forward and backward chunks cover every line exactly once, at the
    right offsets; the active file's unfinished last line is left out."""
    lines = [f'{{"n":{i},"pad":"{"x" * (i % 37)}"}}'.encode() for i in range(300)]
    data = b"\n".join(lines) + b"\n" + b'{"partial":'
    (tmp_path / "app.log").write_bytes(data)
    store = LogStore(tmp_path, ("app.log",), windows=(50, 97, 211))
    with store.open(store.resolve("app.log")) as reader:
        assert isinstance(reader, PlainReader)
        assert reader.end == len(data) - len(b'{"partial":')
        forward = []
        for base, s, e in reader.forward(0, None):
            assert data[base + s : base + e] == bytes(reader.buffer[s:e])
            forward.append(bytes(reader.buffer[s:e]))
        backward = []
        for base, s, e in reader.backward(0, reader.end):
            assert data[base + s : base + e] == bytes(reader.buffer[s:e])
            backward.append(bytes(reader.buffer[s:e]))
    assert all(chunk.endswith(b"\n") for chunk in forward + backward)
    assert b"".join(forward).split(b"\n")[:-1] == lines
    assert b"".join(reversed(backward)).split(b"\n")[:-1] == lines


def test_gzip_reader_streams_whole_lines_and_keeps_offsets(tmp_path: Path) -> None:
    """A gzipped file reads as the same lines at the same (uncompressed) offsets as plain,
    from any start offset; a corrupt one is a ReadError, not a crash."""
    lines = [f"line {i} {'y' * (i % 53)}".encode() for i in range(400)]
    data = b"\n".join(lines) + b"\n"
    with gzip.open(tmp_path / "app.20260101T000000-000.log.gz", "wb") as fh:
        fh.write(data)
    store = LogStore(tmp_path, ("app.log",), windows=(64, 128, 300))
    listed = store.resolve("app.20260101T000000-000.log.gz")
    with store.open(listed) as reader:
        assert isinstance(reader, GzipReader)
        got = bytearray()
        for base, s, e in reader.forward(0, None):
            assert base + s == len(got)
            got += reader.buffer[s:e]
        assert bytes(got) == data
        middle = data.index(b"line 200 ")
        rest = b"".join(bytes(reader.buffer[s:e]) for _, s, e in reader.forward(middle, None))
        assert rest == data[middle:]
        assert reader.head() == lines[0] + b"\n"
    (tmp_path / "app.20260102T000000-000.log.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    broken = store.resolve("app.20260102T000000-000.log.gz")
    with store.open(broken) as reader, pytest.raises(ReadError):
        list(reader.forward(0, None))


HARD_LINKED = "app.20260106T000000-000.log"


def test_a_hard_link_to_a_file_outside_is_neither_listed_nor_read(
    logdir: Path, tmp_path: Path
) -> None:
    """A real hard link in the log directory, named like a rotated file, to a file outside
    it (its canonical path *is* inside: only the inode says it is not the log's own): not
    listed, not resolvable, and an open of a file that became one after listing fails."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.log").write_bytes(EVIL)
    os.link(outside / "secret.log", logdir / HARD_LINKED)
    assert (logdir / HARD_LINKED).resolve().parent == logdir.resolve()  # looks inside
    store = LogStore(logdir, ("app.log",))
    assert HARD_LINKED not in [f.name for f in store.files()]
    with pytest.raises(NoSuchFile):
        store.resolve(HARD_LINKED)
    # Listed while it was the log's own, then swapped for a hard link to the outside file.
    listed = store.resolve(ROTATED)
    os.unlink(logdir / ROTATED)
    os.link(outside / "secret.log", logdir / ROTATED)
    with pytest.raises(ReadError):
        store.open(listed)


def test_an_active_file_that_is_a_hard_link_is_refused(tmp_path: Path) -> None:
    """``app.log`` itself hard-linked to a file elsewhere is not listed either."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "secret.log").write_bytes(EVIL)
    os.link(tmp_path / "secret.log", logs / "app.log")
    store = LogStore(logs, ("app.log",))
    assert store.files() == []
    with pytest.raises(NoSuchFile):
        store.resolve("app.log")
