"""The browser's way in: the bearer token typed once into a sign-in form, exchanged for a
short-lived signed cookie.

A browser cannot put an ``Authorization`` header on a page load or on an ``EventSource``,
and a token in a URL ends up in access logs, proxies and history. So the page's sign-in
form posts the token (in the body) once; the answer is an ``HttpOnly``, ``SameSite=Strict``
cookie (``Secure`` over HTTPS), scoped to the viewer's paths, holding an expiry signed with
HMAC-SHA256 under a key derived from the token. Every worker process that has the token
can check it; changing the token ends every session. JavaScript never sees the token or
the cookie. With ``OBSERVE_AUTH_CALLBACK`` the host decides (its own session), and this
mechanism is off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

__all__ = ["COOKIE_NAME", "SessionSigner"]

COOKIE_NAME = "flask_observe_logs"
_PURPOSE = b"flask_observe.logviewer.session.v1"


class SessionSigner:
    """Issues and checks session values.

    :param token: the configured bearer token (the key is derived from it).
    :param lifetime: seconds a session lasts.
    """

    def __init__(self, token: str, lifetime: int) -> None:
        self._key = hmac.new(token.encode(), _PURPOSE, hashlib.sha256).digest()
        self.lifetime = lifetime

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, now: float | None = None) -> str:
        """A new session value, valid for :attr:`lifetime` seconds."""
        expires = int((time.time() if now is None else now) + self.lifetime)
        payload = f"{expires}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._sign(payload)}"

    def valid(self, value: str | None, now: float | None = None) -> bool:
        """Whether ``value`` is a session this signer issued that has not expired."""
        if not value or len(value) > 200:
            return False
        payload, _, signature = value.rpartition(".")
        expires, _, _nonce = payload.partition(".")
        if not expires.isdigit():
            return False
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return False
        current = time.time() if now is None else now
        return current < int(expires) <= current + self.lifetime + 60
