"""Log search: every filter, both orders, paging by cursor, bounded work — checked against a
plain, independent reading of the same files (the oracle) written by the real handler."""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_observe.logging import ObserveFormatter
from flask_observe.logging.files import RetentionPolicy, RotatingFileHandler, rotated_files
from flask_observe.logviewer.lines import LEVELS, format_time
from flask_observe.logviewer.query import Query, QueryError, parse_query
from flask_observe.logviewer.redact import Redactor
from flask_observe.logviewer.search import Limits, Page
from flask_observe.logviewer.search import run_search as _run_search
from flask_observe.logviewer.signing import Signer
from flask_observe.logviewer.store import LogStore

START = 1_790_000_000.0  # 2026-09-21
CIDS = [f"req-{i:02d}" for i in range(12)]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", 'quote"d', "back\\slash", "über"]
PLATFORMS = ["twitter", "instagram", "tiktok"]
TINY = (61, 127, 257, 509)

#: Cursors in these tests are signed and checked with one key.
SIGNER = Signer(b"search-test-key-0123456789abcdef", "token")


def run_search(store: LogStore, query: Query, limits: Limits, *args: Any, **kw: Any) -> Page:
    return _run_search(store, query, limits, *args, signer=SIGNER, **kw)


def make_lines(count: int, seed: int = 7) -> list[tuple[float, str]]:
    """``(created, line)``: lines as ObserveFormatter renders them, a few raw text lines."""
    rnd = random.Random(seed)
    formatter = ObserveFormatter("svc")
    out = []
    for i in range(count):
        created = START + i * 0.5
        if rnd.random() < 0.04:
            out.append((created, f"raw text line {i} {rnd.choice(WORDS)}"))
            continue
        fields: dict[str, Any] = {}
        if rnd.random() < 0.8:
            fields["correlation_id"] = rnd.choice(CIDS)
        if rnd.random() < 0.5:
            fields["platform"] = rnd.choice(PLATFORMS)
        if rnd.random() < 0.3:
            fields["status"] = rnd.choice([200, 404, 500])
        if rnd.random() < 0.2:
            fields["trace_id"] = f"{rnd.randrange(16**8):08x}" * 4
        level = rnd.choice(LEVELS)
        message = f"event {i} {rnd.choice(WORDS)} {rnd.choice(WORDS)}"
        line = formatter.format_fields(created, level, f"app.{rnd.choice('xyz')}", message, fields)
        out.append((created, line))
    return out


def write_logs(directory: Path, lines: list[tuple[float, str]], max_bytes: int = 6000) -> None:
    """Write through the real rotating handler: gzipped rotated files, then one rotated
    file left plain, then the active file."""
    handler = RotatingFileHandler(
        directory / "app.log",
        max_bytes=max_bytes,
        retention=RetentionPolicy(0, 0, 0),
        quiet_seconds=0,  # one process writes: compress rotated files at once
    )
    try:
        cut = len(lines) * 3 // 4
        for created, line in lines[:cut]:
            handler.write_line(line, created)
        assert handler.wait_idle(10)
        handler.compress = False
        handler.rotate(lines[cut][0])
        for created, line in lines[cut:]:
            handler.write_line(line, created)
        assert handler.wait_idle(10)
    finally:
        handler.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("search") / "logs"
    directory.mkdir()
    write_logs(directory, make_lines(900))
    names = [p.name for p in rotated_files(directory, "app.log")]
    assert any(n.endswith(".gz") for n in names)
    assert any(n.endswith(".log") for n in names)
    return directory


def all_lines(directory: Path) -> Iterator[tuple[str, int, bytes]]:
    """The oracle's reading: every line of every file, oldest first, with its offset."""
    for path in [*rotated_files(directory, "app.log"), directory / "app.log"]:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        offset = 0
        for line in data.split(b"\n")[:-1]:
            yield path.name, offset, line
            offset += len(line) + 1


def oracle(directory: Path, query: Query) -> list[tuple[str, int]]:
    """What a search must return, computed the obvious way."""
    out = []
    for name, offset, line in all_lines(directory):
        if query.file and name != query.file:
            continue
        if query.text is not None and query.text.encode() not in line:
            continue
        if query.regex is not None and not re.search(query.regex, line.decode()):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if record is None and (
            query.levels or query.correlation_id or query.fields or query.since or query.until
        ):
            continue
        if record is not None:
            if query.levels is not None and record["level"] not in query.levels:
                continue
            if query.correlation_id and record.get("correlation_id") != query.correlation_id:
                continue
            if query.trace_id and record.get("trace_id") != query.trace_id:
                continue
            if any(_text(record.get(k)) != v for k, v in query.fields):
                continue
            if query.since and record["timestamp"] < query.since:
                continue
            if query.until and record["timestamp"] >= query.until:
                continue
        out.append((name, offset))
    return out[::-1] if query.newest_first else out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def every_page(
    store: LogStore, query: Query, limits: Limits, redactor: Redactor | None = None
) -> tuple[list[tuple[str, int]], list[Page]]:
    """Follow cursors to the end; the pages' results in order, and the pages."""
    pages: list[Page] = []
    got: list[tuple[str, int]] = []
    current = query
    while True:
        page = run_search(store, current, limits, redactor)
        pages.append(page)
        got += [(item["file"], item["offset"]) for item in page.results]
        if page.cursor is None:
            return got, pages
        assert len(pages) < 5000, "paging does not end"
        args = {"cursor": [page.cursor], "order": ["newest" if query.newest_first else "oldest"]}
        current = replace(query, cursor=parse_query(_as_args(query) | args, **_LIM).cursor)


_LIM: dict[str, Any] = {"max_results": 100_000, "max_pattern_length": 256, "signer": SIGNER}


def _as_args(query: Query) -> dict[str, list[str]]:
    """The request arguments that parse back into ``query`` (for the cursor's check)."""
    args: dict[str, list[str]] = {}
    for name in ("text", "regex", "file", "correlation_id", "trace_id"):
        if getattr(query, name) is not None:
            args[name] = [getattr(query, name)]
    if query.levels is not None:
        args["levels"] = [",".join(sorted(query.levels))]
    if query.fields:
        args["field"] = [f"{k}={v}" for k, v in query.fields]
    return args


QUERIES = st.builds(
    Query,
    text=st.one_of(st.none(), st.sampled_from([*WORDS, "event 1", "raw text", "svc", "zz"])),
    regex=st.one_of(st.none(), st.sampled_from([r"event \d+5 ", r"^raw", r"o$", r"ch.rlie"])),
    levels=st.one_of(st.none(), st.frozensets(st.sampled_from(LEVELS), min_size=1)),
    correlation_id=st.one_of(st.none(), st.sampled_from(CIDS)),
    fields=st.lists(
        st.tuples(st.just("platform"), st.sampled_from(PLATFORMS))
        | st.tuples(st.just("status"), st.sampled_from(["500", "404", '"500"'])),
        max_size=2,
    ).map(tuple),
    since=st.one_of(st.none(), st.integers(0, 460).map(lambda s: format_time(START + s))),
    until=st.one_of(st.none(), st.integers(0, 460).map(lambda s: format_time(START + s))),
    limit=st.integers(2, 40),
    newest_first=st.booleans(),
)


def test_every_query_pages_to_exactly_the_oracles_lines(logs: Path) -> None:
    """Property: for random combinations of filters, order and page size, reading every
    page (tiny read windows, so every chunk boundary is crossed) gives exactly the lines
    the oracle finds, in order, without duplicates."""
    store = LogStore(logs, ("app.log",), windows=TINY)

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(QUERIES)
    def check(query: Query) -> None:
        got, _ = every_page(store, query, Limits())
        assert got == oracle(logs, query)

    check()


@pytest.mark.parametrize("newest_first", [True, False])
def test_time_budget_pages_are_partial_and_their_cursors_finish(
    logs: Path, newest_first: bool
) -> None:
    """With no time at all, every page still does a chunk of work and says it stopped for the
    budget; following its cursors ends with exactly the full answer."""
    store = LogStore(logs, ("app.log",), windows=TINY)
    query = Query(text="alpha", limit=1000, newest_first=newest_first)
    got, pages = every_page(store, query, Limits(time_budget=0.0))
    assert got == oracle(logs, query)
    assert len(pages) > 10
    assert all(p.partial and p.stopped == "time_budget" for p in pages[:-1])


def test_response_byte_cap_stops_a_page_with_a_cursor(logs: Path) -> None:
    """Pages end before their lines pass the byte cap; together they are the whole answer."""
    store = LogStore(logs, ("app.log",))
    query = Query(limit=1000, newest_first=False)
    got, pages = every_page(store, query, Limits(max_response_bytes=3000))
    assert got == oracle(logs, query)
    assert all(p.stopped == "response_bytes" for p in pages[:-1])
    assert all(sum(len(json.dumps(r)) for r in p.results) < 3000 + 500 for p in pages)


def test_limit_is_capped_and_bad_parameters_name_themselves() -> None:
    """``limit`` above the cap, unknown parameters and bad values are QueryErrors."""
    cases = {
        "limit": {"limit": ["1001"]},
        "unknown": {"q": ["x"]},
        "level": {"level": ["loud"]},
        "since": {"since": ["last tuesday"]},
        "regex": {"regex": ["x" * 300]},
        "correlation_id": {"correlation_id": ["has spaces"]},
        "trace_id": {"trace_id": ["xyz"]},
        "field": {"field": ["novalue"]},
        "cursor": {"cursor": ["not-a-cursor"]},
        "order": {"order": ["sideways"]},
    }
    for name, args in cases.items():
        with pytest.raises(QueryError) as info:
            parse_query(args, max_results=1000, max_pattern_length=256, signer=SIGNER)
        assert info.value.args[0].split(":")[0] in (name, "q")


def test_a_cursor_only_continues_its_own_search(logs: Path) -> None:
    """A cursor given with other filters is refused rather than silently misapplied."""
    store = LogStore(logs, ("app.log",))
    page = run_search(store, Query(text="alpha", limit=2), Limits())
    assert page.cursor is not None
    with pytest.raises(QueryError, match="different search"):
        parse_query({"text": ["bravo"], "cursor": [page.cursor]}, **_LIM)
    again = parse_query({"text": ["alpha"], "cursor": [page.cursor], "limit": ["5"]}, **_LIM)
    assert again.cursor is not None


def test_relative_since_is_fixed_on_the_first_page() -> None:
    """``since=15m`` is resolved once; the cursor carries the resolved time."""
    query = parse_query({"since": ["15m"]}, **_LIM, now=START)
    assert query.since == format_time(START - 900)
    assert parse_query({"since": ["2026-09-21T10:00"]}, **_LIM).since == "2026-09-21T10:00:00.000Z"
    assert parse_query({"since": ["2026-09-21T12:00+02:00"]}, **_LIM).since == (
        "2026-09-21T10:00:00.000Z"
    )


def test_time_range_bisects_instead_of_scanning(tmp_path: Path) -> None:
    """On a large time-ordered file a ten-second window reads a few kilobytes, not the file,
    and finds exactly the lines in the window."""
    lines = make_lines(40_000, seed=3)
    (tmp_path / "app.log").write_text("".join(line + "\n" for _, line in lines))
    size = (tmp_path / "app.log").stat().st_size
    store = LogStore(tmp_path, ("app.log",))
    since, until = format_time(START + 9000), format_time(START + 9010)
    for newest_first in (True, False):
        query = Query(since=since, until=until, limit=1000, newest_first=newest_first)
        page = run_search(store, query, Limits())
        assert [(r["file"], r["offset"]) for r in page.results] == oracle(tmp_path, query)
        assert len(page.results) > 10
        assert page.scanned_bytes < size / 50


@pytest.mark.parametrize("newest_first", [False, True])
def test_rotation_between_pages_loses_and_repeats_nothing(
    tmp_path: Path, newest_first: bool
) -> None:
    """Page 1 ends inside the active file; the file is rotated and gzipped; page 2 finds
    its place again by the file's first-line fingerprint."""
    lines = make_lines(400, seed=11)
    handler = RotatingFileHandler(tmp_path / "app.log", max_bytes=0, quiet_seconds=0)
    try:
        for created, line in lines:
            handler.write_line(line, created)
        store = LogStore(tmp_path, ("app.log",))
        query = Query(limit=150, newest_first=newest_first)
        first = run_search(store, query, Limits())
        assert first.files == ["app.log"]
        assert first.cursor is not None
        handler.rotate()
        assert handler.wait_idle(10)
        order = ["newest" if newest_first else "oldest"]
        cursor = parse_query({"cursor": [first.cursor], "order": order}, **_LIM).cursor
        second = run_search(store, replace(query, limit=1000, cursor=cursor), Limits())
    finally:
        handler.close()
    assert second.files[0].endswith(".log.gz")
    got = [_shown(r) for r in first.results + second.results]
    expected = [_message(line) for _, line in lines]
    assert got == (expected[::-1] if newest_first else expected)


def _shown(item: dict[str, Any]) -> str:
    return str(item["record"]["message"]) if "record" in item else str(item["raw"])


def _message(line: str) -> str:
    try:
        return str(json.loads(line)["message"])
    except ValueError:
        return line


def test_redaction_hides_secrets_and_they_cannot_be_searched_for(tmp_path: Path) -> None:
    """Secrets are masked in results; searching for a secret's value (text, field or regex)
    finds nothing with redaction on, and finds the line with it off."""
    formatter = ObserveFormatter("svc")
    line = formatter.format_fields(
        START,
        "info",
        "app",
        "calling https://bob:hunter2pass@api.example/ with Authorization: Bearer abc.def.ghijkl",
        {"password": "hunter2", "api_key": "k-123456", "user": "bob"},
    )
    raw = "print(): connecting as bob with password=hunter2 now"
    (tmp_path / "app.log").write_text(line + "\n" + raw + "\n")
    store = LogStore(tmp_path, ("app.log",))
    redactor = Redactor(*_default_redaction())
    shown = run_search(store, Query(text="print()"), Limits(), redactor).results
    assert shown[0]["raw"] == "print(): connecting as bob with password=[REDACTED] now"
    page = run_search(store, Query(text="api.example"), Limits(), redactor)
    record = page.results[0]["record"]
    assert record["password"] == record["api_key"] == "[REDACTED]"
    assert "hunter2pass" not in record["message"]
    assert "abc.def.ghijkl" not in record["message"]
    assert record["user"] == "bob"
    for query in (
        Query(text="hunter2"),
        Query(fields=(("password", "hunter2"),)),
        Query(regex="Bearer abc"),
    ):
        assert run_search(store, query, Limits(), redactor).results == []
        assert len(run_search(store, query, Limits(), None).results) >= 1


def _default_redaction() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from flask_observe.logviewer.settings import DEFAULT_REDACT_KEYS, DEFAULT_REDACT_PATTERNS

    return DEFAULT_REDACT_KEYS, DEFAULT_REDACT_PATTERNS


def test_raw_lines_are_text_and_long_lines_are_truncated(tmp_path: Path) -> None:
    """A non-JSON line comes back as ``raw``; a line over the per-line cap comes back
    truncated; structured filters never match raw lines."""
    long_line = '{"timestamp":"2026-09-21T10:00:00.000Z","message":"' + "z" * 5000 + '"}'
    (tmp_path / "app.log").write_text("Traceback: boom\n" + long_line + "\n")
    store = LogStore(tmp_path, ("app.log",))
    page = run_search(store, Query(newest_first=False), Limits(max_line_bytes=1000))
    assert page.results[0]["raw"] == "Traceback: boom"
    assert page.results[1]["truncated"] is True
    assert len(page.results[1]["raw"]) == 1000
    assert run_search(store, Query(levels=frozenset(LEVELS)), Limits()).results == []


def test_file_filter_reads_one_file_including_gzip(logs: Path) -> None:
    """``file=`` restricts the search to that file, gzipped ones too."""
    store = LogStore(logs, ("app.log",))
    gz = next(f.name for f in store.files() if f.compressed)
    page = run_search(store, Query(file=gz, limit=1000, newest_first=False), Limits())
    assert page.files == [gz]
    assert [(r["file"], r["offset"]) for r in page.results] == oracle(
        logs, Query(file=gz, newest_first=False)
    )
