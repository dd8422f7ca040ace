"""The one WSGI middleware of an app: binds a correlation ID to each request, times it once,
and hands a :class:`~flask_observe.hooks.RequestRecord` to every feature's request hooks.

The ID lives in a :class:`~contextvars.ContextVar` (:mod:`flask_observe.context`) for the whole
request, including the streaming of its response, and is echoed in the response header on
every response — 404s, 405s, errors raised by other WSGI middleware and 500s included.

An incoming ID is accepted only when it is 1 to ``max_length`` characters from
``A-Z a-z 0-9 . _ : @ + = -``; anything else (CR/LF, control characters, ANSI escapes,
spaces, non-ASCII, over-long values) is dropped and a fresh UUID4 is generated instead, so no
caller-supplied byte outside that set reaches a log line or a response header.
"""

from __future__ import annotations

import logging
import operator
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .._internal import FailureLog, ReportedErrors, environ_key, mark_reported, request_path
from ..context import _correlation_id, _id_pool, id_validator
from ..hooks import ENVIRON_KEY, RECORD_KEY, RequestRecord

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .._ticker import Ticker

__all__ = ["CorrelationMiddleware"]

logger = logging.getLogger("flask_observe")

#: ``new_correlation_id``, without the call through it (once a request).
_new_id = _id_pool.take
_first = operator.itemgetter(0)
_lower = str.lower


class CorrelationMiddleware:
    """WSGI middleware that binds a correlation ID to each request.

    :param wsgi_app: the application to wrap (normally ``app.wsgi_app``).
    :param header: response header (and preferred request header) of the ID.
    :param fallback_headers: other request headers accepted when ``header`` is absent.
    :param trust_incoming: accept valid incoming IDs; ``False`` always generates one.
    :param max_length: longest incoming ID accepted.
    :param on_start: called with the :class:`RequestRecord` before the app is called.
    :param on_finish: called with the :class:`RequestRecord` after the response is sent.
    :param ids: assign, bind and echo correlation IDs; ``False`` only times requests for the
        hooks (metrics with correlation IDs turned off).
    :param trace_lookup: called when the app starts its response (its trace span is current
        then) to fill :attr:`RequestRecord.trace_id`.
    :param route_lookup: called when the app starts its response (its request context is
        still active then) to name the matched route for :attr:`RequestRecord.route` (an
        exception that escapes the app leaves it to the app: see
        ``flask_observe.correlation.setup``).
    :param propagate_exceptions: returns ``True`` when an exception escaping ``wsgi_app``
        should be re-raised (debug and testing) instead of turned into a 500 response.
    :param ticker: the app's background ticker, started by the first request in each process
        (so a pre-fork server's master never owns its thread): one attribute test a request.
    """

    def __init__(
        self,
        wsgi_app: WSGIApplication,
        *,
        header: str = "X-Request-ID",
        fallback_headers: Iterable[str] = ("X-Correlation-ID",),
        trust_incoming: bool = True,
        max_length: int = 128,
        on_finish: Callable[[RequestRecord], None] | None = None,
        route_lookup: Callable[[], str | None] | None = None,
        propagate_exceptions: Callable[[], bool] = lambda: False,
        on_start: Callable[[RequestRecord], None] | None = None,
        ids: bool = True,
        trace_lookup: Callable[[], str | None] | None = None,
        ticker: Ticker | None = None,
    ) -> None:
        self.wrapped = wsgi_app
        self._ticker = ticker
        self.header = header
        self._header_lower = header.lower()
        keys = [environ_key(header)] + [environ_key(h) for h in fallback_headers]
        self._environ_keys = tuple(dict.fromkeys(keys)) if trust_incoming else ()
        self._is_valid = id_validator(max_length)
        self._on_finish = on_finish
        self._on_start = on_start
        self._ids = ids
        self._trace_lookup = trace_lookup
        self._route_lookup = route_lookup
        self._propagate = propagate_exceptions
        self._failures = FailureLog()

    def incoming_id(self, environ: WSGIEnvironment) -> str | None:
        """The first valid ID among the accepted request headers, if any."""
        for key in self._environ_keys:
            value = environ.get(key)
            if value is not None and self._is_valid(value):
                return str(value)
        return None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        ticker = self._ticker
        if ticker is not None and not ticker.running:
            ticker.ensure_started()
        correlation_id: str | None = None
        token = None
        if self._ids:
            # incoming_id(), inlined (it runs on every request)
            is_valid = self._is_valid
            for key in self._environ_keys:
                value = environ.get(key)
                if value is not None and is_valid(value):
                    correlation_id = str(value)
                    break
            else:
                correlation_id = _new_id()
            environ[ENVIRON_KEY] = correlation_id
            token = _correlation_id.set(correlation_id)
        record = RequestRecord(environ, correlation_id)
        environ[RECORD_KEY] = record
        if (
            environ.get("CONTENT_LENGTH", "") not in ("", "0")
            or "HTTP_TRANSFER_ENCODING" in environ
        ):
            stream = environ.get("wsgi.input")
            if stream is not None:
                environ["wsgi.input"] = _TimedInput(stream, record)
        id_header = (self.header, correlation_id) if correlation_id is not None else None
        header_lower = self._header_lower
        route_lookup = self._route_lookup
        trace_lookup = self._trace_lookup
        if self._on_start is not None:
            try:
                self._on_start(record)
            except Exception:
                self._failures("request start hook (metrics)")

        def start_with_id(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            if id_header is not None:
                try:
                    # The names are looked through in C; most responses have no such header.
                    present = header_lower in map(_lower, map(_first, headers))
                except TypeError:  # a name that is not a str (PEP 3333 says it is)
                    present = True
                if present:
                    headers[:] = [h for h in headers if h[0].lower() != header_lower]
                headers.append(id_header)
            try:
                record.status = int(status[:3])
            except ValueError:
                record.status = 0
            if route_lookup is not None:
                try:
                    record.route = route_lookup()
                except Exception:
                    self._failures("looking up the matched route")
            if trace_lookup is not None:
                try:
                    record.trace_id = trace_lookup()
                except Exception:
                    self._failures("looking up the current trace")
            return start_response(status, headers, exc_info)

        try:
            iterable = self.wrapped(environ, start_with_id)
        except Exception:
            if route_lookup is not None and record.route is None:
                try:
                    record.route = route_lookup()
                except Exception:
                    self._failures("looking up the matched route")
            return self._error_response(record, start_response)
        finally:
            # Unbound as soon as the app returns: code that runs after the response object is
            # handed back (a test client, the server) never sees a stale ID. The body
            # iterator and the finish hook bind it again while they run.
            if token is not None:
                try:  # reset_correlation_id(token), inlined
                    _correlation_id.reset(token)
                except ValueError:
                    _correlation_id.set(None)
        return _ResponseIterable(record, iterable, self._finish)

    def _error_response(
        self, record: RequestRecord, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Answer 500 with the ID for an exception that escaped the wrapped app."""
        exc_info = sys.exc_info()
        # Only an app that already started its response needs exc_info passed on (PEP 3333);
        # some servers and test clients re-raise whenever it is given.
        started = record.status != 0
        record.failed = True
        record.status = 500
        try:
            logger.error(
                "unhandled exception in the WSGI application",
                exc_info=exc_info,
                extra={"path": request_path(record.environ)},
            )
            if self._propagate():
                # Whoever gets it now (the development server, its debugger) would print the
                # traceback a second time: it is marked as told, and the debugger's copy of it
                # on wsgi.errors is dropped.
                mark_reported(exc_info[1])
                errors = record.environ.get("wsgi.errors")
                if errors is not None and exc_info[1] is not None:
                    record.environ["wsgi.errors"] = ReportedErrors(errors, exc_info[1])
                raise
            body = b"Internal Server Error\n"
            headers = [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ]
            if record.correlation_id is not None:
                headers.append((self.header, record.correlation_id))
            start_response("500 INTERNAL SERVER ERROR", headers, exc_info if started else None)
            record.size = len(body)
            return [body]
        finally:
            self._finish(record)
            del exc_info

    def _finish(self, record: RequestRecord) -> None:
        record.duration = time.perf_counter() - record.start
        # environ -> record -> environ is a cycle: break it so both go with their last reference.
        record.environ.pop(RECORD_KEY, None)
        on_finish = self._on_finish
        if on_finish is None:
            return
        correlation_id = record.correlation_id
        if correlation_id is None:  # timing only: nothing to bind
            try:
                on_finish(record)
            except Exception:
                self._failures("request finish hook (metrics)")
            return
        token = _correlation_id.set(correlation_id)
        try:
            on_finish(record)
        except Exception:
            self._failures("request finish hook (access log, metrics)")
        finally:
            try:  # reset_correlation_id(token), inlined
                _correlation_id.reset(token)
            except ValueError:  # finished in another context (some async servers)
                _correlation_id.set(None)


class _TimedInput:
    """``wsgi.input`` of a request with a body, counting the time its reads wait for the
    client (:attr:`RequestRecord.client_wait`); everything else is the server's stream."""

    __slots__ = ("_record", "_stream")

    def __init__(self, stream: Any, record: RequestRecord) -> None:
        self._stream = stream
        self._record = record

    def read(self, *args: Any) -> bytes:
        started = time.perf_counter()
        try:
            return self._stream.read(*args)  # type: ignore[no-any-return]
        finally:
            self._record.client_wait += time.perf_counter() - started

    def readinto(self, buffer: Any) -> int:
        # What Werkzeug's LimitedStream calls.
        started = time.perf_counter()
        try:
            return self._stream.readinto(buffer)  # type: ignore[no-any-return]
        finally:
            self._record.client_wait += time.perf_counter() - started

    def readline(self, *args: Any) -> bytes:
        started = time.perf_counter()
        try:
            return self._stream.readline(*args)  # type: ignore[no-any-return]
        finally:
            self._record.client_wait += time.perf_counter() - started

    def readlines(self, *args: Any) -> list[bytes]:
        started = time.perf_counter()
        try:
            return self._stream.readlines(*args)  # type: ignore[no-any-return]
        finally:
            self._record.client_wait += time.perf_counter() - started

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


#: What ``next()`` returns at the end of a response body (no chunk is ever this object).
_END: Any = object()


class _ResponseIterable:
    """Wraps the response body to count its bytes and finish the request.

    The request is finished (access log written, ID unbound) when the body is exhausted or,
    if the server stops early (client gone, error), when it calls ``close()``.
    """

    __slots__ = ("_finish", "_finished", "_iterable", "_record")

    def __init__(
        self,
        record: RequestRecord,
        iterable: Iterable[bytes],
        finish: Callable[[RequestRecord], None],
    ) -> None:
        self._record = record
        self._iterable = iterable
        self._finish = finish
        self._finished = False

    def __iter__(self) -> Iterator[bytes]:
        # The ID is bound only while the app produces a chunk (a streaming view logs with
        # it), never across a yield: the server's code between chunks, or a test client that
        # stops after the first one, must not see it.
        record = self._record
        correlation_id = record.correlation_id
        clock = time.perf_counter
        if correlation_id is None:  # timing only: no ID to bind around the chunks
            try:
                for chunk in self._iterable:
                    record.size += len(chunk)
                    # Between a yield and the next step the server writes the chunk: the
                    # client's reading speed, not the server's work.
                    mark = clock()
                    yield chunk
                    record.client_wait += clock() - mark
            except BaseException:
                record.failed = True
                raise
            self._done()
            return
        var = _correlation_id
        end = _END
        # One binding covers starting the iterator and producing the first chunk; the end is
        # a sentinel from next(), not a StopIteration raised and caught on every request.
        token = var.set(correlation_id)
        try:
            iterator = iter(self._iterable)
            chunk = next(iterator, end)
        except BaseException:
            record.failed = True
            raise
        finally:
            var.reset(token)
        while chunk is not end:
            record.size += len(chunk)
            mark = clock()
            yield chunk
            record.client_wait += clock() - mark
            token = var.set(correlation_id)
            try:
                chunk = next(iterator, end)
            except BaseException:
                record.failed = True
                raise
            finally:
                var.reset(token)
        if not self._finished:  # _done(), inlined
            self._finished = True
            self._finish(record)

    def _done(self) -> None:
        if not self._finished:
            self._finished = True
            self._finish(self._record)

    def close(self) -> None:
        close = getattr(self._iterable, "close", None)
        if close is None:
            self._done()
            return
        correlation_id = self._record.correlation_id
        if correlation_id is None:
            try:
                close()
            finally:
                self._done()
            return
        token = _correlation_id.set(correlation_id)
        try:
            close()
        finally:
            try:  # reset_correlation_id(token), inlined
                _correlation_id.reset(token)
            except ValueError:
                _correlation_id.set(None)
            if not self._finished:  # _done(), inlined
                self._finished = True
                self._finish(self._record)
