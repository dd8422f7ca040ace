"""Signing what the viewer hands out and takes back: search cursors and live-tail positions.

Both name a file and a byte offset in it. Made by hand, they could start a read inside a
line, where redaction by field name no longer applies (``..."password":"hunter2"...`` read
from the middle is no longer a field). So every cursor and event ID is signed with
HMAC-SHA256 (a 128-bit tag) under a key of the app, and one that does not verify is refused
(HTTP 400). Where the key comes from, first that applies:

1. ``OBSERVE_AUTH_TOKEN``: a key derived from it. Every worker process of every host that
   has the token verifies what any of them signed (a search paged across gunicorn workers,
   a tail reconnecting to another replica); changing the token invalidates them all.
2. Flask's ``SECRET_KEY`` (hosts that sign in through ``OBSERVE_AUTH_CALLBACK`` usually have
   one for their own sessions): a key derived from it, shared the same way.
3. Otherwise a random key of this process: a cursor or event ID from another worker process
   (or from before a restart) is refused; set ``SECRET_KEY`` when there are several.

Each kind of value is signed with its own purpose, so a cursor is never accepted as an
event ID or the other way round. Offsets are still aligned to line starts when used
(:meth:`~.readers.PlainReader.line_start`): a signature proves who made a value, not that
the file under it has not changed since.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Any

import orjson

__all__ = ["BadSignature", "Signer"]

_DERIVE = b"flask_observe.logviewer.signing.v1"
_TAG_BYTES = 16
#: Longest signed value accepted (a tail position names at most a few dozen files).
MAX_LENGTH = 8192


class BadSignature(ValueError):
    """A value that this app did not sign (forged, altered, or signed with another key)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and checks JSON values for one app.

    :param key: the secret key (derive it with :meth:`for_app`).
    :param source: where the key came from: ``"token"``, ``"secret_key"`` or ``"process"``.
    """

    def __init__(self, key: bytes, source: str = "process") -> None:
        if len(key) < 16:
            raise ValueError("a signing key needs at least 16 bytes")
        self._key = key
        self.source = source

    @classmethod
    def for_app(cls, token: str | None, secret_key: str | bytes | None) -> Signer:
        """The signer of an app: keyed by its auth token, else by its ``SECRET_KEY``, else
        by a random key of this process (see the module's documentation)."""
        if token:
            return cls(hmac.new(token.encode(), _DERIVE, hashlib.sha256).digest(), "token")
        if secret_key:
            raw = secret_key.encode() if isinstance(secret_key, str) else bytes(secret_key)
            return cls(hmac.new(raw, _DERIVE, hashlib.sha256).digest(), "secret_key")
        return cls(secrets.token_bytes(32), "process")

    def _tag(self, purpose: str, payload: bytes) -> bytes:
        message = purpose.encode() + b"\x00" + payload
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_TAG_BYTES]

    def dumps(self, purpose: str, value: Any) -> str:
        """``value`` as JSON, URL-safe, with its tag: ``<payload>.<tag>``."""
        payload = orjson.dumps(value)
        return f"{_b64(payload)}.{_b64(self._tag(purpose, payload))}"

    def loads(self, purpose: str, text: str) -> Any:
        """The value of a string :meth:`dumps` made for ``purpose``.

        :raises BadSignature: for anything else.
        """
        if not text or len(text) > MAX_LENGTH:
            raise BadSignature("not a signed value")
        body, dot, tag = text.partition(".")
        if not dot:
            raise BadSignature("not a signed value")
        try:
            payload, given = _unb64(body), _unb64(tag)
        except (ValueError, binascii.Error):
            raise BadSignature("not a signed value") from None
        if _b64(payload) != body or _b64(given) != tag:  # one spelling only: no look-alikes
            raise BadSignature("not a signed value")
        if not hmac.compare_digest(given, self._tag(purpose, payload)):
            raise BadSignature("signature does not match")
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:  # pragma: no cover - we signed it, so it parses
            raise BadSignature("not a signed value") from None
