"""The correlation ID of the current request or task: the one piece of request context every
feature reads (log lines, spans, error events, outgoing calls, Celery messages).

It lives in a :class:`~contextvars.ContextVar`; the correlation feature's middleware sets it
for each request, Celery's hooks for each task, and :func:`bind_correlation_id` for any other
work (a CLI command, a thread, a scheduled job). IDs are UUID4s made 64 at a time.

An incoming ID is accepted only when it is 1 to ``max_length`` characters from
``A-Z a-z 0-9 . _ : @ + = -`` (:data:`REQUEST_ID_PATTERN`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

__all__ = [
    "MAX_REQUEST_ID_LENGTH_LIMIT",
    "REQUEST_ID_PATTERN",
    "bind_correlation_id",
    "get_correlation_id",
    "id_validator",
    "new_correlation_id",
    "reset_correlation_id",
    "set_correlation_id",
]

#: Characters accepted in an incoming request ID (see docs/correlation.md).
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:@+=-]"
#: The longest ID any setting may accept.
MAX_REQUEST_ID_LENGTH_LIMIT = 1024

_correlation_id: ContextVar[str | None] = ContextVar("flask_observe.correlation_id", default=None)


def get_correlation_id() -> str | None:
    """The correlation ID of the current request or task, or ``None`` outside of one."""
    return _correlation_id.get()


def set_correlation_id(value: str | None) -> Token[str | None]:
    """Bind ``value`` as the current correlation ID; reset with the returned token.

    Prefer :func:`bind_correlation_id`, which cannot forget the reset.
    """
    return _correlation_id.set(value)


def reset_correlation_id(token: Token[str | None]) -> None:
    """Undo :func:`set_correlation_id`; tolerates a token from another context."""
    try:
        _correlation_id.reset(token)
    except ValueError:
        # The response was finished in another context than the one that started it (some
        # async servers); make sure the ID does not leak into the next request anyway.
        _correlation_id.set(None)


@contextmanager
def bind_correlation_id(value: str | None = None) -> Iterator[str]:
    """Run a block of work outside a request (a CLI command, a thread, a scheduled job) under
    one correlation ID: every log line, span, error event and outgoing call of the block
    carries it.

    >>> with bind_correlation_id() as correlation_id:
    ...     logger.info("nightly clean-up")  # the line carries correlation_id

    :param value: the ID to bind; a fresh one (:func:`new_correlation_id`) when ``None``.
    :returns: (as the ``with`` target) the bound ID.
    """
    correlation_id = value if value is not None else new_correlation_id()
    token = _correlation_id.set(correlation_id)
    try:
        yield correlation_id
    finally:
        reset_correlation_id(token)


def _uuid4_block_bits(count: int) -> tuple[int, int]:
    """Masks that turn ``count`` concatenated 16-byte random blocks into UUID4s: clear, then
    set, the version nibble (4) and the RFC 9562 variant bits (10) of every block."""
    clear = bytearray(b"\xff" * 16)
    clear[6], clear[8] = 0x0F, 0x3F
    bits = bytearray(16)
    bits[6], bits[8] = 0x40, 0x80
    return int.from_bytes(bytes(clear) * count, "big"), int.from_bytes(bytes(bits) * count, "big")


class _IdPool:
    """UUID4s made :attr:`batch` at a time from one ``os.urandom`` call.

    ``os.urandom`` is a system call, and on a virtual machine with the usual side-channel
    mitigations a system call costs as much as the rest of the ID work together; one call per
    64 IDs takes it off nearly every request, and the bit-twiddling and hex conversion run
    once over the whole batch in C. The bytes are the same kernel CSPRNG output, each used
    once. ``list.pop`` is atomic, so threads never get the same ID; a forked child (gunicorn,
    Celery workers) drops the parent's unused IDs, or parent and child would hand out the same.
    """

    batch = 64

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._clear, self._bits = _uuid4_block_bits(self.batch)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._drop)

    def _drop(self) -> None:
        self._ids = []

    def take(self) -> str:
        """A UUID4 never handed out before in this process."""
        try:
            return self._ids.pop()
        except IndexError:
            pass
        size = 16 * self.batch
        value = int.from_bytes(os.urandom(size), "big") & self._clear | self._bits
        h = value.to_bytes(size, "big").hex()
        fresh = [
            f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
            f"{h[i + 20 : i + 32]}"
            for i in range(0, 2 * size, 32)
        ]
        # Another thread may refill at the same time: each list's IDs are popped once.
        self._ids = fresh
        return fresh.pop()


_id_pool = _IdPool()


def new_correlation_id() -> str:
    """A fresh random ID: a UUID4 (RFC 9562) in its canonical 36-character form.

    Same bits as ``str(uuid.uuid4())`` — 122 random bits from ``os.urandom`` — in a fraction of
    the time (see :class:`_IdPool`).
    """
    return _id_pool.take()


def id_validator(max_length: int) -> Callable[[str], bool]:
    """A predicate accepting IDs made of the allowed characters, 1 to ``max_length`` long."""
    matcher = re.compile(f"{REQUEST_ID_PATTERN}{{1,{max_length}}}").fullmatch

    def is_valid(value: str) -> bool:
        return len(value) <= max_length and matcher(value) is not None

    return is_valid
