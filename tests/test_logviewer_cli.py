"""``flask observe logs search|tail``: the viewer's filters from a shell."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from flask_observe.context import reset_correlation_id, set_correlation_id
from flask_observe.logging.files import RotatingFileHandler
from flask_observe.logviewer import LogViewer
from flask_observe.logviewer.match import _literal_regex
from flask_observe.state import current_state

logger = logging.getLogger("clitest")


def write(count: int, correlation_id: str, level: int = logging.WARNING) -> None:
    token = set_correlation_id(correlation_id)
    try:
        for i in range(count):
            logger.log(level, "%s line %d", correlation_id, i, extra={"platform": "twitter"})
    finally:
        reset_correlation_id(token)


def make(make_app: Callable[..., Flask], tmp_path: Path, **config: object) -> Flask:
    return make_app("cliviewer", log_stdout=False, log_dir=str(tmp_path / "logs"), **config)


def test_search_prints_matching_lines_across_rotated_files(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """Lines of one correlation ID, in a rotated gzip file and the active one, oldest first,
    as JSON lines; ``--limit`` pages through the files for itself."""
    app = make(make_app, tmp_path)
    write(3, "cli-req")
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, RotatingFileHandler))
    handler.quiet_seconds = 0  # one process writes: compress rotated files at once
    handler.rotate()
    assert handler.wait_idle(10)
    write(2, "cli-req")
    write(5, "other")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["observe", "logs", "search", "-c", "cli-req", "--order", "oldest"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [x["message"] for x in lines] == [f"cli-req line {i}" for i in (0, 1, 2, 0, 1)]
    short = runner.invoke(
        args=[
            "observe",
            "logs",
            "search",
            "--field",
            "platform=twitter",
            "-n",
            "2",
            "--format",
            "short",
        ]
    )
    assert short.exit_code == 0, short.output
    assert short.output.splitlines()[0].endswith("other line 4  [other]")
    assert len(short.output.splitlines()) == 2


def test_tail_prints_the_last_lines_with_filters(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """``tail -n 2 --level error`` prints the two newest errors, oldest first."""
    app = make(make_app, tmp_path)
    write(4, "t", logging.ERROR)
    write(4, "t", logging.INFO)
    result = app.test_cli_runner().invoke(
        args=["observe", "logs", "tail", "-n", "2", "--level", "error", "--format", "short"]
    )
    assert result.exit_code == 0, result.output
    assert [line.split(": ", 1)[1] for line in result.output.splitlines()] == [
        "t line 2  [t]",
        "t line 3  [t]",
    ]


def test_control_characters_from_the_logs_never_reach_the_terminal_raw(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """A logged message with ANSI escapes, CR/LF and a C1 control, and a raw line with
    them: printed escaped (short and raw), or as valid JSON giving the message back
    (json); one output line per result, none forged."""
    app = make(make_app, tmp_path)
    hostile = "\x1b[31mRED\x1b[0m\r\nFAKE\x1b]0;title\x07\x9b2J\x7f"
    token = set_correlation_id("evil")
    try:
        logger.warning("path %s", hostile)
    finally:
        reset_correlation_id(token)
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, RotatingFileHandler))
    handler.write_line("raw " + hostile.replace("\n", " "), 0.0)
    runner = app.test_cli_runner()

    def run(*args: str) -> list[str]:
        result = runner.invoke(args=["observe", "logs", *args])
        assert result.exit_code == 0, result.output
        assert not [c for c in result.output if c != "\n" and (c < " " or "\x7f" <= c <= "\x9f")]
        return result.output.splitlines()

    (short,) = run("search", "-c", "evil", "--format", "short")
    assert "path \\x1b[31mRED\\x1b[0m\\r\\nFAKE" in short
    (as_json,) = run("search", "-c", "evil")
    assert json.loads(as_json)["message"] == "path " + hostile
    (raw,) = run("search", "--text", "raw ")
    assert raw.startswith("raw \\x1b[31mRED")
    assert len(run("tail", "-n", "2", "--format", "short")) == 2


def test_bad_filters_are_usage_errors(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """A bad filter or file name exits 2 with the reason, not a traceback."""
    app = make(make_app, tmp_path)
    write(1, "x")
    runner = app.test_cli_runner()
    for args, reason in (
        (["search", "--level", "loud"], "level:"),
        (["search", "--regex", "(a+)\\1"], "regex:"),
        (["search", "--file", "../../etc/passwd"], "invalid file name"),
        (["tail", "nope.log"], "no such log file"),
    ):
        result = runner.invoke(args=["observe", "logs", *args])
        assert result.exit_code == 2, (args, result.output)
        assert reason in result.output


def test_logs_commands_need_a_log_directory(make_app: Callable[..., Flask]) -> None:
    """Without OBSERVE_LOG_DIR there are no files: the ``logs`` commands say so and which
    setting to set, instead of "No such command"."""
    app = make_app("nofiles", log_stdout=False)
    result = app.test_cli_runner().invoke(args=["observe", "logs", "search"])
    assert result.exit_code != 0
    assert "no log files (set OBSERVE_LOG_DIR)" in result.output
    assert current_state(app).get(LogViewer) is None


def test_regex_without_the_logviewer_extra_names_it_instead_of_a_traceback(
    make_app: Callable[..., Flask], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands exist whenever there is a log directory, RE2 or not: without it a plain
    search still works, and ``--regex`` / ``-i`` exit 1 naming the extra to install."""
    app = make(make_app, tmp_path)
    write(2, "plain")
    monkeypatch.setitem(sys.modules, "re2", None)  # as if google-re2 were not installed
    _literal_regex.cache_clear()
    runner = app.test_cli_runner()
    try:
        plain = runner.invoke(args=["observe", "logs", "search", "--text", "plain line 1"])
        assert plain.exit_code == 0, plain.output
        assert len(plain.output.splitlines()) == 1
        for args in (["search", "--regex", "line \\d"], ["tail", "-i", "--text", "PLAIN"]):
            result = runner.invoke(args=["observe", "logs", *args])
            assert result.exit_code == 1, (args, result.output)
            assert 'pip install "flask-observe[logviewer]"' in result.output
            assert result.exception is None or isinstance(result.exception, SystemExit)
    finally:
        _literal_regex.cache_clear()
