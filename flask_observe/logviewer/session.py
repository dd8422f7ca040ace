"""The browser's way in: the bearer token typed once into a sign-in form, exchanged for a
short-lived signed cookie that sign-out ends.

A browser cannot put an ``Authorization`` header on a page load or on an ``EventSource``,
and a token in a URL ends up in access logs, proxies and history. So the page's sign-in
form posts the token (in the body) once; the answer is an ``HttpOnly``, ``SameSite=Strict``
cookie (``Secure`` as ``OBSERVE_LOGVIEWER_COOKIE_SECURE`` says), scoped to the viewer's paths,
holding an expiry and a random session id signed with HMAC-SHA256 under a key derived from the
token. Every worker process that has the token can check it; changing the token ends every
session. Sign-out ends one: its id goes into the host's shared
:class:`~flask_observe._authstore.AuthStore` until it would have expired anyway, and every
worker refuses it from then on (a store that cannot be read refuses every session: the
bearer token still works). JavaScript never sees the token or the cookie. With
``OBSERVE_AUTH_CALLBACK`` the host decides (its own session), and this mechanism is off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING

from .._internal import FailureLog

if TYPE_CHECKING:
    from .._authstore import AuthStore

__all__ = ["COOKIE_NAME", "SessionSigner"]

COOKIE_NAME = "flask_observe_logs"
_PURPOSE = b"flask_observe.logviewer.session.v1"


class SessionSigner:
    """Issues, checks and ends session values.

    :param token: the configured bearer token (the key is derived from it).
    :param lifetime: seconds a session lasts.
    :param store: where ended sessions are shared; ``None``: sign-out only clears the cookie.
    """

    def __init__(self, token: str, lifetime: int, store: AuthStore | None = None) -> None:
        self._key = hmac.new(token.encode(), _PURPOSE, hashlib.sha256).digest()
        self.lifetime = lifetime
        self._store = store
        self._failures = FailureLog()

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, now: float | None = None) -> str:
        """A new session value, valid for :attr:`lifetime` seconds."""
        expires = int((time.time() if now is None else now) + self.lifetime)
        payload = f"{expires}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._sign(payload)}"

    def _open(self, value: str | None, now: float) -> tuple[str, int] | None:
        """``(session id, expiry)`` of a value this signer issued that has not expired."""
        if not value or len(value) > 200:
            return None
        payload, _, signature = value.rpartition(".")
        expires, _, _nonce = payload.partition(".")
        if not expires.isdigit():
            return None
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        if not now < int(expires) <= now + self.lifetime + 60:
            return None
        return payload, int(expires)

    def valid(self, value: str | None, now: float | None = None) -> bool:
        """Whether ``value`` is a session this signer issued, not expired, not ended."""
        current = time.time() if now is None else now
        opened = self._open(value, current)
        if opened is None:
            return False
        if self._store is None:
            return True
        try:
            return not self._store.is_revoked(opened[0])
        except Exception:  # cannot tell whether it was ended: refuse it
            self._failures("the shared sign-in state (looking up ended sessions)")
            return False

    def revoke(self, value: str | None, now: float | None = None) -> bool:
        """End the session ``value`` on every worker of the host.

        :returns: whether it was a live session that is now ended (``False`` also when the
            store failed: logged).
        """
        current = time.time() if now is None else now
        opened = self._open(value, current)
        if opened is None or self._store is None:
            return False
        try:
            self._store.revoke(opened[0], opened[1], current)
        except Exception:
            self._failures("the shared sign-in state (ending a session at sign-out)")
            return False
        return True
