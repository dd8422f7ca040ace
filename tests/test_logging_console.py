"""Development output that reads well, checked against the real things: a pseudo-terminal for
"is a terminal", a real ``flask run --debug`` for werkzeug's banner and the traceback of a 500,
real gunicorn for its own lines and for several workers without a multiprocess directory.

- ``OBSERVE_LOG_FORMAT=auto`` (the default): the console format on a terminal or in debug
  mode, JSON on a pipe; colours on a terminal unless ``NO_COLOR``;
- no ANSI colour code from another library inside a JSON string or as ``\\x1b[`` text;
- one traceback per error in debug mode, and the route on the access line of that 500;
- gunicorn's own lines through ``flask_observe.contrib.gunicorn`` in the app's format;
- a warning from each gunicorn worker serving metrics without ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from flask_observe.logging.formatter import ConsoleFormat, ObserveFormatter, is_terminal
from flask_observe.logging.handlers import console_colors, stdout_format
from flask_observe.metrics.multiprocess import gunicorn_workers

from .peers import free_port

ROOT = Path(__file__).resolve().parent.parent
#: A console line's start: the time of day, then the level column.
CONSOLE_LINE = re.compile(r"\d\d:\d\d:\d\d\.\d{3}Z \[(\w+) *\] ")
COLOR = re.compile(r"\x1b\[[0-9;]*m")
TRACEBACK = "Traceback (most recent call last):"


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this checkout importable, none of the outer
    shell's flask_observe or colour settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLASK_", "OBSERVE_")) and k not in ("NO_COLOR", "FORCE_COLOR")
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def read_pty(master: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """Everything the child wrote to the terminal, until it closed it (the line discipline's
    CR LF made LF again)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(10)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


CHILD = """
import logging
from tests.apps.dev_app import app

with app.test_client() as client:
    client.get("/items/7").close()
logging.getLogger("tests.child").warning("from the child", extra={"k": "two words"})
"""


def run_child(tmp_path: Path, *, on_pty: bool, **env: str) -> str:
    environment = child_env(FLASK_OBSERVE_AUTH_STATE_DIR=str(tmp_path / "auth"), **env)
    command = [sys.executable, "-c", CHILD]
    if not on_pty:
        done = subprocess.run(
            command, env=environment, cwd=tmp_path, capture_output=True, timeout=60, check=True
        )
        return done.stdout.decode()
    master, slave = os.openpty()
    proc = subprocess.Popen(
        command,
        env=environment,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.STDOUT,
    )
    os.close(slave)
    return read_pty(master, proc)


# -- the format: a pseudo-terminal, a pipe -------------------------------------------------------


@pytest.mark.realtime
def test_auto_is_coloured_console_on_a_terminal_and_json_on_a_pipe(tmp_path: Path) -> None:
    """The same program, no setting: on a pseudo-terminal aligned, coloured console lines;
    on a pipe one JSON object per line; on a terminal with ``NO_COLOR`` the console format
    without a colour code."""
    terminal = run_child(tmp_path, on_pty=True)
    lines = [COLOR.sub("", line) for line in terminal.splitlines() if line.strip()]
    assert lines
    assert all(CONSOLE_LINE.match(line) for line in lines), terminal
    assert COLOR.search(terminal)  # coloured
    access = next(line for line in lines if "[flask_observe.access]" in line)
    assert "GET /items/<int:item_id> 200" in access  # method, route and status: once
    assert "path=/items/7" in access
    assert "route=" not in access
    warning = next(line for line in lines if "from the child" in line)
    assert CONSOLE_LINE.match(warning)[1] == "warning"  # type: ignore[index]
    assert "k='two words'" in warning
    # aligned: every message starts in the same column
    columns = {len(CONSOLE_LINE.match(line)[0]) for line in lines}  # type: ignore[index]
    assert len(columns) == 1

    pipe = run_child(tmp_path, on_pty=False)
    records = [json.loads(line) for line in pipe.splitlines() if line.strip()]
    assert {r["logger"] for r in records} >= {"dev-app", "flask_observe.access", "tests.child"}

    plain = run_child(tmp_path, on_pty=True, NO_COLOR="1")
    assert "\x1b" not in plain
    assert all(CONSOLE_LINE.match(line) for line in plain.splitlines() if line.strip())


@pytest.mark.realtime
def test_json_and_console_are_one_switch_away(tmp_path: Path) -> None:
    """``FLASK_OBSERVE_LOG_FORMAT=json`` on a terminal writes JSON; ``console`` on a pipe
    writes the console format (without colours: a pipe is not a terminal)."""
    terminal = run_child(tmp_path, on_pty=True, FLASK_OBSERVE_LOG_FORMAT="json")
    assert [json.loads(line)["logger"] for line in terminal.splitlines() if line.strip()]
    pipe = run_child(tmp_path, on_pty=False, FLASK_OBSERVE_LOG_FORMAT="console")
    assert "\x1b" not in pipe
    assert all(CONSOLE_LINE.match(line) for line in pipe.splitlines() if line.strip())


def test_auto_decides_by_terminal_and_debug_mode() -> None:
    """``auto`` is console for a pseudo-terminal or in debug mode, JSON for a pipe; colours
    follow the terminal, ``NO_COLOR`` and ``FORCE_COLOR``."""
    master, slave = os.openpty()
    read, write = os.pipe()
    try:
        with open(slave, "w", closefd=False) as tty, open(write, "w", closefd=False) as pipe:
            assert is_terminal(tty)
            assert not is_terminal(pipe)
            assert stdout_format("auto", stream=tty) == "console"
            assert stdout_format("auto", stream=pipe) == "json"
            assert stdout_format("auto", debug=True, stream=pipe) == "console"
            assert stdout_format("json", debug=True, stream=tty) == "json"
            assert stdout_format("console", stream=pipe) == "console"
            assert console_colors({}, tty)
            assert not console_colors({}, pipe)
            assert not console_colors({"NO_COLOR": "1"}, tty)
            assert console_colors({"FORCE_COLOR": "1"}, pipe)
            assert not console_colors({"FORCE_COLOR": "0"}, pipe)
    finally:
        for fd in (master, slave, read, write):
            os.close(fd)


def record(msg: str, **extra: Any) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "werkzeug", "levelname": "INFO", "levelno": 20, "msg": msg, **extra}
    )


BANNER = (
    "\x1b[31m\x1b[1mWARNING: This is a development server. Do not use it in a production"
    " deployment.\x1b[0m\n * Running on http://127.0.0.1:5000"
)


def test_colour_codes_of_other_libraries_never_reach_json_or_console_text() -> None:
    """werkzeug's banner comes with its colour codes: JSON holds none (no ``\\u001b``), the
    console neither raw nor as ``\\x1b[`` text; the banner's second line is a continuation
    indented under the message."""
    line = ObserveFormatter("svc").format(record(BANNER))
    assert "\\u001b" not in line
    assert "\x1b" not in line
    assert json.loads(line)["message"].startswith("WARNING: This is a development server.")
    text = ObserveFormatter("svc", "console", colors=False).format(record(BANNER))
    assert "\x1b" not in text
    assert "\\x1b" not in text
    first, second = text.splitlines()
    assert CONSOLE_LINE.match(first)
    assert "WARNING: This is a development server." in first
    assert second.startswith(" " * len(CONSOLE_LINE.match(first)[0]))  # type: ignore[index]
    assert "* Running on http://127.0.0.1:5000" in second


def test_only_a_librarys_styling_is_dropped_not_the_data_it_logs() -> None:
    """The colour codes dropped are the ones in a format string (a library's own styling)
    and in werkzeug's arguments (it styles its request lines); data a host logs as an
    argument keeps them, escaped, for whoever investigates it."""
    formatter = ObserveFormatter("svc")
    styled_args = record('"%s" %s %s', args=("\x1b[1mGET / HTTP/1.1\x1b[0m", "200", "-"))
    assert json.loads(formatter.format(styled_args))["message"] == '"GET / HTTP/1.1" 200 -'
    data = logging.makeLogRecord(
        {
            "name": "host",
            "levelname": "INFO",
            "levelno": 20,
            "msg": "said %s",
            "args": ("\x1b[31mx",),
        }
    )
    line = formatter.format(data)
    assert json.loads(line)["message"] == "said \x1b[31mx"
    assert "\\u001b[31mx" in line  # JSON-escaped, never raw


def test_console_line_layout() -> None:
    """Time of day, the level column, the message, ``[logger]``, then the fields in the
    order the JSON line has them; a traceback on its own lines as Python prints it, without
    the ``exc_type`` field it already names; a value quoted and escaped once."""
    try:
        raise KeyError("missing")
    except KeyError:
        exc_info = sys.exc_info()
    formatter = ObserveFormatter("svc", "console", colors=False)
    line = formatter.format(
        logging.makeLogRecord(
            {
                "name": "host.views",
                "levelname": "ERROR",
                "levelno": 40,
                "msg": "lookup failed",
                "exc_info": exc_info,
                "created": 1764645296.25,
                "account": 7,
                "note": "a\x1bb c",
            }
        )
    )
    first, *rest = line.splitlines()
    assert first.startswith("03:14:56.250Z [error    ] lookup failed")
    assert first.index("[host.views]") < first.index("service=svc") < first.index("account=7")
    assert "note='a\\x1bb c'" in first  # repr's escape, once
    assert "exc_type" not in line
    assert rest[0] == TRACEBACK
    assert rest[-1] == "KeyError: 'missing'"
    coloured = ConsoleFormat(colors=True)({"timestamp": "x" * 24, "level": "info", "message": "m"})
    assert COLOR.search(coloured)


# -- flask run --debug ---------------------------------------------------------------------------


class FlaskRun:
    """``flask --app tests.apps.dev_app run --debug`` on a free port, output to pipes."""

    def __init__(self, tmp_path: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "tests.apps.dev_app",
                "run",
                "--debug",
                "--no-reload",  # one process to stop; the reloader is not what is tested
                "--port",
                str(self.port),
                *args,
            ],
            env=child_env(FLASK_OBSERVE_AUTH_STATE_DIR=str(tmp_path / "auth"), **env),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.url + "/items/1", timeout=10)
                return
            except (requests.ConnectionError, requests.Timeout):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise AssertionError(f"flask run did not start:\n{self.err}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
        self.out, self.err = out.decode(), err.decode()


@pytest.fixture
def flask_run(tmp_path: Path) -> Iterator[Any]:
    started: list[FlaskRun] = []

    def start(*args: str, **env: str) -> FlaskRun:
        server = FlaskRun(tmp_path, *args, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop()


def serve_one_error(server: FlaskRun) -> None:
    assert requests.get(server.url + "/items/3", timeout=10).status_code == 200
    assert requests.get(server.url + "/boom/1", timeout=10).status_code == 500
    server.stop()


@pytest.mark.realtime
@pytest.mark.parametrize("debugger", [True, False], ids=["debugger", "no-debugger"])
def test_flask_run_debug_reads_well(flask_run: Any, debugger: bool) -> None:
    """``flask run --debug`` with its output on a pipe: the console format (debug mode),
    werkzeug's banner without colour codes and its URL on an indented continuation line, one
    traceback for the 500 (ours, with the request's ID; not the debugger's or the server's
    second copy), and the access line of that 500 names its route."""
    server = flask_run(*(() if debugger else ("--no-debugger",)))
    serve_one_error(server)
    out, err = server.out, server.err
    output = out + err
    assert output.count(TRACEBACK) == 1, output
    assert "\x1b" not in output
    assert "\\x1b" not in output
    assert "\\u001b" not in output
    records = [line for line in out.splitlines() if CONSOLE_LINE.match(line)]
    banner = next(i for i, line in enumerate(out.splitlines()) if "development server" in line)
    assert f"* Running on {server.url}" in out.splitlines()[banner + 1]
    assert out.splitlines()[banner + 1].startswith(" " * 20)
    error = next(line for line in records if "unhandled exception" in line)
    assert "correlation_id=" in error
    assert out.index(TRACEBACK) > out.index(error)  # the traceback follows its line
    assert "RuntimeError: kaboom in the view (1)" in out
    # the route in the message (without one it would name the path, /boom/1)
    # (Found by its path: "500" alone also matched another request's line when its random
    # correlation ID held those digits.)
    (access,) = [
        line for line in records if "[flask_observe.access]" in line and "=/boom/1" in line
    ]
    assert "GET /boom/<int:n> 500" in access
    assert "path=/boom/1" in access
    assert any("GET /items/<int:item_id> 200" in line for line in records)


@pytest.mark.realtime
def test_flask_run_debug_with_json_has_one_traceback_and_no_escape_codes(flask_run: Any) -> None:
    """``FLASK_OBSERVE_LOG_FORMAT=json flask run --debug``: every log line JSON, the banner's
    message without ``\\u001b``, the 500's traceback once (in the ``exception`` field, not
    also on standard error), the access line's ``route`` set."""
    server = flask_run(FLASK_OBSERVE_LOG_FORMAT="json")
    serve_one_error(server)
    # Flask's own two lines (" * Serving Flask app", " * Debug mode: on") are not log lines.
    records = [json.loads(line) for line in server.out.splitlines() if line.startswith("{")]
    assert "\\u001b" not in server.out
    assert TRACEBACK not in server.err
    banner = next(r for r in records if "development server" in r["message"])
    assert banner["message"].startswith("WARNING: This is a development server.")
    errors = [r for r in records if "exception" in r]
    assert len(errors) == 1
    assert errors[0]["exc_type"] == "RuntimeError"
    (access,) = [r for r in records if r["logger"] == "flask_observe.access" and r["status"] == 500]
    assert access["route"] == "/boom/<int:n>"


def test_a_re_raised_exception_keeps_its_route_on_the_access_line(
    make_app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``PROPAGATE_EXCEPTIONS`` (debug, testing) the exception leaves Flask before any
    response starts, and its request context is gone when the middleware sees it: the route
    is noted at teardown, so the access line names it."""
    app = make_app("propagating")
    app.config["PROPAGATE_EXCEPTIONS"] = True

    @app.get("/fail/<int:n>")
    def fail(n: int) -> str:
        raise ValueError(n)

    with pytest.raises(ValueError, match="3"):
        app.test_client().get("/fail/3")
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    (access,) = [x for x in lines if x["logger"] == "flask_observe.access"]
    assert access["route"] == "/fail/<int:n>"
    assert access["status"] == 500
    assert access["message"] == "GET /fail/<int:n> 500"


# -- gunicorn ------------------------------------------------------------------------------------


class Gunicorn:
    """gunicorn serving ``tests.apps.dev_app`` on a free port."""

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
        on_pty: bool = False,
        workers: int = 1,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.master: int | None = None
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            *args,
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{self.port}",
            "tests.apps.dev_app:app",
        ]
        environment = child_env(FLASK_OBSERVE_AUTH_STATE_DIR=str(tmp_path / "auth"), **(env or {}))
        if on_pty:
            self.master, slave = os.openpty()
            out: Any = slave
            err: Any = subprocess.STDOUT
        else:
            out, err = subprocess.PIPE, subprocess.PIPE
        self.proc = subprocess.Popen(command, env=environment, cwd=tmp_path, stdout=out, stderr=err)
        if on_pty:
            os.close(slave)
        try:
            self.pids = self._wait_for_workers(workers)
        except BaseException:
            if self.proc.poll() is None:  # never leave a server behind
                self.stop()
            raise

    def _wait_for_workers(self, workers: int) -> set[int]:
        """Every worker has loaded the app: answers came from ``workers`` processes. The
        requests are sent together and each holds its worker a moment, so an idle sync
        worker that is always first to accept cannot answer them all."""
        pids: set[int] = set()
        self.served = 0
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(workers) as pool:
            while len(pids) < workers:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise AssertionError(f"gunicorn did not start:\n{self.out}\n{self.err}")
                for pid, served in pool.map(lambda _: self._one(), range(workers)):
                    self.served += served
                    if pid is not None:
                        pids.add(pid)
        return pids

    def _one(self) -> tuple[int | None, int]:
        """One request that holds a worker for 0.3 s: the pid that answered, if any, and
        whether the request may have been served (counted)."""
        try:
            answer = requests.get(
                self.url + "/items/1?sleep=0.3", timeout=10, headers={"Connection": "close"}
            )
        except requests.Timeout:
            # Bound before the workers have booted: on a busy machine a request can wait a
            # while for one (and may still be served).
            return None, 1
        except requests.ConnectionError:
            time.sleep(0.2)
            return None, 0
        return int(answer.json()["pid"]), 1

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        if self.master is not None:
            self.out, self.err = read_pty(self.master, self.proc, timeout=30), ""
            return
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
        self.out, self.err = out.decode(), err.decode()


SHIPPED_CONFIG = ("-c", "python:flask_observe.contrib.gunicorn")


@pytest.mark.realtime
def test_gunicorns_own_lines_are_json_through_the_shipped_config(tmp_path: Path) -> None:
    """With the shipped config module, gunicorn's own lines (``Starting gunicorn``,
    ``Booting worker``, ``Worker exiting``) are JSON lines like the app's, with the process
    that wrote them and the service; nothing on either stream is plain text. An exception
    the app re-raises (``PROPAGATE_EXCEPTIONS``) has one traceback: gunicorn's own
    ``Error handling request`` copy of it is dropped."""
    directory = tmp_path / "prom"
    directory.mkdir()
    server = Gunicorn(
        tmp_path,
        *SHIPPED_CONFIG,
        env={
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "FLASK_OBSERVE_SERVICE_NAME": "shop",
            "FLASK_PROPAGATE_EXCEPTIONS": "true",
        },
    )
    assert requests.get(server.url + "/boom/2", timeout=10).status_code == 500
    server.stop()
    own = [json.loads(line) for line in server.err.splitlines() if line.strip()]
    app = [json.loads(line) for line in server.out.splitlines() if line.strip()]
    messages = [r["message"] for r in own]
    assert any(m.startswith("Starting gunicorn") for m in messages), messages
    (booting,) = [r for r in own if r["message"].startswith("Booting worker with pid:")]
    assert booting["logger"] == "gunicorn.error"
    assert booting["level"] == "info"
    assert booting["pid"] == int(booting["message"].rsplit(" ", 1)[1]) in server.pids
    assert any(m.startswith("Worker exiting") for m in messages)
    assert {r["service"] for r in own} == {"shop"}
    assert any(r["logger"] == "flask_observe.access" for r in app)
    tracebacks = [r for r in own + app if TRACEBACK in r.get("exception", "")]
    assert len(tracebacks) == 1
    assert tracebacks[0]["logger"] == "flask_observe"
    assert TRACEBACK not in server.err.replace('"exception":"Traceback', "")


@pytest.mark.realtime
def test_gunicorns_own_lines_are_console_lines_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal the shipped config writes gunicorn's lines in the console format, next
    to the app's console lines: one readable stream."""
    directory = tmp_path / "prom"
    directory.mkdir()
    server = Gunicorn(
        tmp_path, *SHIPPED_CONFIG, env={"PROMETHEUS_MULTIPROC_DIR": str(directory)}, on_pty=True
    )
    server.stop()
    lines = [COLOR.sub("", line) for line in server.out.splitlines() if line.strip()]
    assert lines
    assert all(CONSOLE_LINE.match(line) for line in lines), server.out
    booting = next(line for line in lines if "Booting worker with pid:" in line)
    assert "[gunicorn.error]" in booting
    assert "service=dev_app" in booting
    assert any("[flask_observe.access]" in line for line in lines)


def warnings_about_workers(text: str) -> list[str]:
    return [
        json.loads(line)["message"]
        for line in text.splitlines()
        if line.startswith("{") and "without PROMETHEUS_MULTIPROC_DIR" in line
    ]


@pytest.mark.realtime
def test_each_worker_warns_when_metrics_are_not_multiprocess(tmp_path: Path) -> None:
    """Plain ``gunicorn -w 2`` without ``PROMETHEUS_MULTIPROC_DIR``: each worker says at
    WARNING, once, that a scrape sees only its share, and how to fix it; and a scrape really
    sees fewer requests than were served."""
    server = Gunicorn(tmp_path, workers=2)
    for _ in range(10):
        requests.get(server.url + "/items/2", timeout=5, headers={"Connection": "close"})
    seen = [
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in requests.get(server.url + "/metrics", timeout=5).text.splitlines()
            if line.startswith("http_requests_total{") and 'route="/items/<int:item_id>"' in line
        )
        for _ in range(6)
    ]
    server.stop()
    warnings = warnings_about_workers(server.out)
    assert len(warnings) == 2, server.out
    pids = {int(re.search(r"gunicorn worker (\d+)", w)[1]) for w in warnings}  # type: ignore[index]
    assert pids == server.pids
    assert all("PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) gunicorn -c" in w for w in warnings)
    # Both workers served some of the requests to the route: no scrape counts them all.
    served = server.served + 10
    assert all(0 < count < served for count in seen), (seen, served)


@pytest.mark.realtime
@pytest.mark.parametrize(
    ("args", "workers", "multiprocess", "expected"),
    [((), 1, False, 0), ((), 2, True, 0), (("--preload",), 2, False, 1)],
    ids=["one-worker", "multiprocess-dir", "preload"],
)
def test_the_worker_warning_only_where_counts_are_split(
    tmp_path: Path, args: tuple[str, ...], workers: int, multiprocess: bool, expected: int
) -> None:
    """No warning with one worker or with ``PROMETHEUS_MULTIPROC_DIR``; with ``--preload``
    the master, which loads the app, says it once."""
    env = {}
    if multiprocess:
        (tmp_path / "prom").mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    server = Gunicorn(tmp_path, *args, workers=workers, env=env)
    server.stop()
    warnings = warnings_about_workers(server.out)
    assert len(warnings) == expected, server.out
    if expected:
        assert "preloading the app for 2 workers" in warnings[0]


def test_no_gunicorn_no_worker_count() -> None:
    """Outside gunicorn (this test process) nothing is found on the stack."""
    assert gunicorn_workers() is None
