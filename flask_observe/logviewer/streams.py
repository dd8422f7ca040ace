"""Serving a live tail over HTTP: whether this server can hold a stream at all, and the
server-sent event stream itself."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from .follow import Event
from .positions import Position

__all__ = ["sse", "stream_refusal"]


def _event(kind: str, payload: Any, ident: str | None) -> bytes:
    head = b"id: " + ident.encode() + b"\n" if ident else b""
    return head + b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def stream_refusal(environ: dict[str, Any], mode: str) -> str | None:
    """Why a live tail's stream must not be held by the server of this request, or
    ``None`` when it may (``mode``: ``OBSERVE_LOGVIEWER_FOLLOW_MODE``).

    A stream holds the thread that serves it for as long as it is open. A server that runs
    each request in a thread or a greenlet says so in ``wsgi.multithread``; one that does
    not (gunicorn's sync workers, a werkzeug server without threads) serves one request at a
    time per process, so two open tails on two sync workers would leave none for the app,
    and gunicorn would kill them as timed out.
    """
    if mode == "stream":
        return None
    if mode == "poll":
        return (
            "live tail streams are off here (OBSERVE_LOGVIEWER_FOLLOW_MODE=poll); poll"
            " GET …/tail/<file>?after=<next> instead"
        )
    if environ.get("wsgi.multithread"):
        return None
    if "gunicorn.socket" in environ:
        server = "gunicorn's sync workers serve one request at a time"
        fix = (
            "run threaded workers (gunicorn -c python:flask_observe.contrib.gunicorn, or"
            " --worker-class gthread --threads 8)"
        )
    else:
        server = "this server serves one request at a time per process (wsgi.multithread)"
        fix = "run it with threads"
    return (
        f"a live tail cannot stream here: {server}, so an open stream would hold a whole"
        f" worker and starve the app; {fix}, or poll GET …/tail/<file>?after=<next> (the"
        " page does)"
    )


def sse(
    initial: Iterable[dict[str, Any]],
    ready_id: str,
    events: Iterator[Event],
    sign: Callable[[Position], str],
) -> Iterator[bytes]:
    """The event stream: the tail's lines, ``ready`` (its id resumes after them), then
    live events. A reconnecting ``EventSource`` sends the last id back as Last-Event-ID."""
    try:
        yield b"retry: 3000\n\n"
        for item in initial:
            yield _event("line", item, None)
        yield _event("ready", {}, ready_id)
        for kind, payload, where in events:
            if kind == "keepalive":
                yield b": keepalive\n\n"
            else:
                yield _event(kind, payload, sign(where) if where is not None else None)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
