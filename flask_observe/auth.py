"""Who may see the sensitive endpoints: health details, the log viewer, ``/metrics`` if asked.

One mechanism for all of them: a bearer token from config (``OBSERVE_AUTH_TOKEN``, compared in
constant time) or a host-supplied ``callable(request) -> bool`` (``OBSERVE_AUTH_CALLBACK``),
which is asked instead when set — plug in the host's own session or API-key check there.
With neither configured, nobody is authorised over HTTP (safe default).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Request, jsonify, request
from flask.typing import ResponseReturnValue

from ._internal import FailureLog

__all__ = ["Authorizer"]

F = TypeVar("F", bound=Callable[..., ResponseReturnValue])

REALM = 'Bearer realm="flask_observe"'


class Authorizer:
    """Decides whether a request may see sensitive data.

    :param token: the bearer token that grants access, or ``None``.
    :param callback: ``callable(request) -> bool``; asked instead of the token when set.
    """

    def __init__(self, token: str | None, callback: Callable[[Request], bool] | None) -> None:
        self._token = token.encode() if token else None
        self._callback = callback
        self._failures = FailureLog()

    @property
    def configured(self) -> bool:
        """Whether any way of granting access is set up."""
        return self._token is not None or self._callback is not None

    def token_matches(self, value: str | None) -> bool:
        """Constant-time comparison of ``value`` with the configured token."""
        if self._token is None or not value:
            return False
        return hmac.compare_digest(value.encode("utf-8", "replace"), self._token)

    def is_authorized(self, req: Request | None = None) -> bool:
        """Whether ``req`` (default: the current request) may see sensitive data.

        A callback that raises counts as a refusal (logged, rate-limited).
        """
        req = req if req is not None else request
        if self._callback is not None:
            try:
                return bool(self._callback(req))
            except Exception:
                self._failures("the OBSERVE_AUTH_CALLBACK")
                return False
        return self.token_matches(bearer_token(req))

    def require(self, view: F) -> F:
        """Decorate a view: 401 without credentials, 403 with wrong ones, JSON bodies."""

        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            if self.is_authorized():
                return view(*args, **kwargs)
            return self.deny()

        return guarded  # type: ignore[return-value]

    def deny(self) -> ResponseReturnValue:
        """The response for a refused request (401 or 403)."""
        if self._callback is None and bearer_token(request) is None:
            response = jsonify(error="authentication required")
            response.status_code = 401
            response.headers["WWW-Authenticate"] = REALM
            return response
        response = jsonify(error="forbidden")
        response.status_code = 403
        return response


def bearer_token(req: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    header = req.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
