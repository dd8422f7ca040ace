"""Small helpers shared by the features: guarded calls with rate-limited failure logs, deadlines,
exit flushes, the request path as text and the shared exclusion list."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._clock import SYSTEM, Clock

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger("flask_observe")

_FAILURE_LOG_INTERVAL = 60.0

#: What a terminal acts on: C0 controls but tab (a CR rewrites the line, a LF forges one, ESC
#: starts an ANSI sequence), DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(match: re.Match[str]) -> str:
    return repr(match[0])[1:-1]


def escape_control(text: str, keep_newlines: bool = False) -> str:
    """``text`` with control characters written as escapes (``\\x1b``, ``\\r``, ``\\n``),
    for output meant for a terminal (console log lines, the CLI)."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(_escaped, text)


class FailureLog:
    """Logs a failure of one kind at most once per interval, with its traceback.

    Guards around enrichment and export use it so a broken piece is visible in the logs but a
    failure on every request cannot flood them.

    :param interval: seconds between two lines about the same kind of failure; the next one
        says how many were suppressed meanwhile (``suppressed_since_last``).
    :param clock: what the interval is measured with (tests move a ``ManualClock``).
    """

    def __init__(self, interval: float = _FAILURE_LOG_INTERVAL, clock: Clock = SYSTEM) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, what: str) -> None:
        """Record a failure of ``what``; call from inside an ``except`` block."""
        now = self._clock.monotonic()
        with self._lock:
            last = self._last.get(what)
            if last is not None and now - last < self._interval:
                self._suppressed[what] = self._suppressed.get(what, 0) + 1
                return
            self._last[what] = now
            suppressed = self._suppressed.pop(what, 0)
        with contextlib.suppress(Exception):  # logging itself broken: nothing left to tell
            logger.exception(
                "flask_observe: %s failed (the host carried on)",
                what,
                extra={"suppressed_since_last": suppressed},
            )


def run_with_deadline(function: Callable[[], object], timeout: float, name: str) -> bool:
    """Run ``function`` in a daemon thread and wait for it at most ``timeout`` seconds.

    Where no thread can be started any more (interpreter shutdown on CPython 3.12.0-3.12.1,
    python/cpython#113964), ``function`` runs in this thread: it must bound its own waits.

    :returns: whether it finished in time (a late one goes on, and dies with the process).
    """
    done = threading.Event()

    def target() -> None:
        try:
            function()
        except Exception:
            logger.exception("flask_observe: %s failed", name)
        finally:
            done.set()

    thread = threading.Thread(target=target, name=f"flask-observe-{name}", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # interpreter shutting down: no new threads
        started = time.monotonic()
        target()
        return time.monotonic() - started <= timeout
    return done.wait(timeout)


#: Of the exit deadline, what is kept for the interpreter's own teardown after the flushes.
EXIT_RESERVE = 0.15


class ExitFlushes:
    """Flushes to run at process exit, all at once, sharing one deadline.

    One ``atexit`` handler for every feature that has something queued for a peer (spans,
    error events, alerts), so the waits overlap instead of adding up: the deadline is the
    longest of their timeouts from the moment exit starts, less :data:`EXIT_RESERVE` for the
    interpreter's teardown, so the process is gone within that timeout. A flush asks
    :meth:`remaining` how long it may still wait. Process-wide by nature, like ``atexit``
    itself: use :data:`exit_flushes`.
    """

    def __init__(self) -> None:
        self._flushes: dict[int, tuple[Callable[[], object], float]] = {}
        self._lock = threading.Lock()
        self._registered = False
        self._deadline: float | None = None

    def remaining(self, timeout: float) -> float:
        """How long a flush of ``timeout`` seconds may wait now: ``timeout``, or at exit what
        is left of the shared deadline if that is less."""
        deadline = self._deadline
        if deadline is None:
            return timeout
        return max(0.0, min(timeout, deadline - time.monotonic()))

    def add(self, flush: Callable[[], object], timeout: float) -> int:
        """Run ``flush`` at exit (it must return within about ``timeout`` seconds)."""
        import atexit

        with self._lock:
            key = id(flush)
            self._flushes[key] = (flush, timeout)
            if not self._registered:
                atexit.register(self.run)
                self._registered = True
        return key

    def remove(self, key: int) -> None:
        with self._lock:
            self._flushes.pop(key, None)

    def run(self) -> None:
        """Start every flush in a daemon thread; wait for them until the longest deadline."""
        with self._lock:
            flushes = list(self._flushes.values())
            self._flushes.clear()
        if not flushes:
            return
        longest = max(timeout for _, timeout in flushes)
        deadline = time.monotonic() + max(0.0, longest - EXIT_RESERVE)
        self._deadline = deadline
        events = []
        for flush, _ in flushes:
            done = threading.Event()
            events.append(done)

            def target(flush: Callable[[], object] = flush, done: threading.Event = done) -> None:
                try:
                    flush()
                except Exception:
                    logger.exception("flask_observe: flushing at exit failed")
                finally:
                    done.set()

            try:
                threading.Thread(target=target, name="flask-observe-exit", daemon=True).start()
            except RuntimeError:
                # No thread may start at this point of the shutdown (CPython 3.12.0-3.12.1):
                # the rest run one after the other here, each given what is left of the
                # deadline through remaining().
                target()
        for done in events:
            done.wait(max(0.0, deadline - time.monotonic()))


exit_flushes = ExitFlushes()


def request_path(environ: WSGIEnvironment) -> str:
    """The request's path as text: WSGI gives ``PATH_INFO`` as bytes decoded as latin-1, so
    a UTF-8 path (``/café``) is decoded again, as Werkzeug does for ``request.path``."""
    path: str = environ.get("PATH_INFO", "")
    if path.isascii():
        return path
    try:
        return path.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that gave real text already
        return path


def environ_key(header: str) -> str:
    """The WSGI environ key of an HTTP request header."""
    return "HTTP_" + header.upper().replace("-", "_")


def compile_exclusions(patterns: tuple[str, ...]) -> Callable[[str], bool] | None:
    """One search function for the shared list of excluded path patterns."""
    if not patterns:
        return None
    combined = re.compile("|".join(f"(?:{p})" for p in patterns))
    # Patterns all anchored at the start (the defaults are) need only be tried there: match
    # instead of search, the same answer for a fraction of the cost on every request.
    find = combined.match if all(_anchored(p) for p in patterns) else combined.search
    return lambda path: find(path) is not None


def _anchored(pattern: str) -> bool:
    """Whether every branch of ``pattern`` starts with ``^`` (no top-level ``|``)."""
    if not pattern.startswith("^"):
        return False
    depth, escaped, in_class = 0, False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return False
    return True


#: Attribute set on an exception flask_observe logged with its traceback before re-raising it.
_REPORTED_ATTR = "__flask_observe_reported__"
_TRACEBACK_START = "Traceback (most recent call last):"


def mark_reported(exc: BaseException | None) -> None:
    """Note that ``exc``'s traceback is in the log already (before it is re-raised)."""
    if exc is not None:
        with contextlib.suppress(Exception):  # an exception type that takes no attributes
            setattr(exc, _REPORTED_ATTR, True)


def was_reported(exc: BaseException | None) -> bool:
    """Whether :func:`mark_reported` was called on ``exc``."""
    return exc is not None and getattr(exc, _REPORTED_ATTR, False) is True


class ReportedErrors:
    """``wsgi.errors`` handed on with an exception already logged: werkzeug's debugger writes
    that exception's traceback there again, as text; that one write is dropped, everything
    else goes to the stream.

    :param stream: the server's ``wsgi.errors``.
    :param exc: the exception logged.
    """

    def __init__(self, stream: Any, exc: BaseException) -> None:
        self._stream = stream
        self._last_line = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
        self._pending = True

    def write(self, text: str) -> Any:
        if (
            self._pending
            and isinstance(text, str)
            and text.startswith(_TRACEBACK_START)
            and text.rstrip().endswith(self._last_line)
        ):
            self._pending = False
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_T = TypeVar("_T")


class PerProcess(Generic[_T]):
    """What ``factory`` builds, made on first use in each process: after a fork (gunicorn
    ``--preload``) the child builds its own (a gRPC channel, an HTTP session) instead of using
    the parent's."""

    def __init__(self, factory: Callable[[], _T]) -> None:
        self._factory = factory
        self._made: _T | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> _T:
        pid = os.getpid()
        made = self._made
        if made is None or self._pid != pid:
            with self._lock:
                if self._made is None or self._pid != pid:
                    self._made = self._factory()
                    self._pid = pid
                made = self._made
        return made

    def built_here(self) -> _T | None:
        """What this process made, if it made it (never the parent's)."""
        made = self._made
        return made if made is not None and self._pid == os.getpid() else None
