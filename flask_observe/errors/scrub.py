"""The one scrubber every captured error goes through: text, fields, and whole Sentry events.

What it removes (docs/errors.md, "What is scrubbed"):

- values after a secret-looking name (``password=…``, ``"token": "…"``, ``api_key: …``,
  ``Authorization: Bearer …``, ``Cookie: …``), bearer/basic credentials and JWTs;
- query strings and fragments of URLs (``https://host/path?code=…`` keeps ``https://host/path``);
- e-mail addresses, and IP addresses other than loopback and private (RFC 1918) ones, unless
  personal data is allowed (``OBSERVE_SENTRY_SEND_PII``);
- fields whose *name* looks secret (the same list), whatever their value;
- anything past :data:`MAX_TEXT` characters.

It is pattern-based: a secret with no name in front of it (``raise ValueError(token)``) is
not recognised. Write messages that say what failed, not the data it failed on.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["FILTERED", "MAX_TEXT", "Scrubber", "secret_key"]

#: What a removed value is replaced with (Sentry's own word for it).
FILTERED = "[Filtered]"
#: Longest text kept (a message, a field, a breadcrumb), in characters.
MAX_TEXT = 4096
_MAX_ITEMS = 50
_MAX_DEPTH = 5

#: Names whose values are secret (in text before ``=``/``:``, and as field names).
_SECRET_NAMES = (
    r"pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|"
    r"auth(?:orization)?|credentials?|cookie|set-cookie|session(?:[_-]?id)?|csrf|xsrf|"
    r"private[_-]?key|signature|sig|dsn|card[_-]?number|cvv|iban|ssn"
)
_SECRET_KEY = re.compile(rf"(?:^|[_.-])(?:{_SECRET_NAMES})(?:$|[_.-])", re.IGNORECASE)
#: ``name=value``, ``name: value``, ``"name": "value"``, ``'name'='value'``.
_NAMED = re.compile(
    rf"""(?P<name>\b(?:[\w-]*[_-])?(?:{_SECRET_NAMES})\b)(?P<sep>["']?\s*[=:]\s*)"""
    r"""(?!\[Filtered\])(?P<value>"[^"]*"|'[^']*'|(?:(?:bearer|basic|token|digest)\s+)?[^\s&,;"')\]}]+)""",
    re.IGNORECASE,
)
#: A cookie header holds several ``name=value`` pairs: everything to the end of the line goes.
_COOKIE = re.compile(
    r"""(\b(?:set-)?cookie["']?\s*[=:]\s*)(?!\s*\[Filtered\])[^\r\n]+""", re.IGNORECASE
)
_CREDENTIAL = re.compile(r"\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_URL_QUERY = re.compile(r"""(\b[a-z][a-z0-9+.-]*://[^\s?#"'<>]*)[?#][^\s"'<>]*""", re.IGNORECASE)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_QUICK = re.compile(
    rf"(?:{_SECRET_NAMES})|bearer|basic|digest|://|@|\d\.\d|:[0-9A-Fa-f]*:|eyJ", re.IGNORECASE
)


def secret_key(name: str) -> bool:
    """Whether a field called ``name`` holds a secret (``password``, ``X-Api-Key``…)."""
    return _SECRET_KEY.search(name) is not None


def _keep_address(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return True  # not an address after all (a version number, say)
    if address.is_loopback:
        return True
    if isinstance(address, ipaddress.IPv4Address):
        return any(address in net for net in _PRIVATE_V4)
    return False


_PRIVATE_V4 = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


def _named(match: re.Match[str]) -> str:
    return f"{match['name']}{match['sep']}{FILTERED}"


def _cookie(match: re.Match[str]) -> str:
    return f"{match[1]}{FILTERED}"


def _credential(match: re.Match[str]) -> str:
    return f"{match[1]} {FILTERED}"


def _url(match: re.Match[str]) -> str:
    return match[1]


class Scrubber:
    """Scrubs text and structures.

    :param send_pii: keep e-mail and IP addresses (personal data, not credentials).
    """

    def __init__(self, send_pii: bool = False) -> None:
        self.send_pii = send_pii

    def text(self, value: str, limit: int = MAX_TEXT) -> str:
        """``value`` with secrets replaced by :data:`FILTERED`, cut at ``limit`` characters."""
        if len(value) > limit:
            value = value[:limit] + "…"
        if _QUICK.search(value) is None:
            return value
        value = _URL_QUERY.sub(_url, value)
        value = _COOKIE.sub(_cookie, value)
        value = _NAMED.sub(_named, value)
        value = _CREDENTIAL.sub(_credential, value)
        value = _JWT.sub(FILTERED, value)
        if not self.send_pii:
            value = _EMAIL.sub("[email]", value)
            value = _IPV4.sub(self._address, value)
            value = _IPV6.sub(self._address, value)
        return value

    @staticmethod
    def _address(match: re.Match[str]) -> str:
        return match[0] if _keep_address(match[0]) else "[ip]"

    def value(self, value: Any, depth: int = 0) -> Any:
        """A scrubbed copy of a field's value: strings scrubbed, mappings by key (a secret
        name hides its value), sequences item by item; other objects as scrubbed text."""
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return self.text(value)
        if depth >= _MAX_DEPTH:
            return FILTERED
        if isinstance(value, Mapping):
            return self.fields(value, depth + 1)
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.value(item, depth + 1) for item in list(value)[:_MAX_ITEMS]]
        try:
            return self.text(str(value))
        except Exception:
            return f"<unprintable {type(value).__name__}>"

    def fields(self, fields: Mapping[Any, Any], depth: int = 0) -> dict[str, Any]:
        """``fields`` scrubbed: a secret-looking name hides its value; values scrubbed."""
        out: dict[str, Any] = {}
        for index, (name, item) in enumerate(fields.items()):
            if index >= _MAX_ITEMS:
                break
            key = str(name)
            out[key] = FILTERED if secret_key(key) else self.value(item, depth)
        return out
