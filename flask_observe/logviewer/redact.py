"""Read-time redaction: secret-looking values are hidden in what the viewer returns.

Two kinds of rules (``OBSERVE_LOGVIEWER_REDACT_KEYS`` and ``…_PATTERNS``): a JSON field whose
name matches a key pattern has its whole value replaced; a value pattern found in any string
(or a raw line) has its group 1 replaced, or the whole match when it has no group. A raw line
(text, or JSON that did not parse: cut short, malformed) gets both: every ``"key": value``
in it whose key matches is hidden as in a record, then the value patterns. The files
are not changed. Patterns come from the app's configuration (trusted), so they run on
Python's ``re``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "Redactor"]

MASK = "[REDACTED]"
_MAX_DEPTH = 32
_LEADING_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")
#: Field names and short values repeat on every line: their verdicts are remembered.
_CACHE_SIZE = 4096
_SHORT = 64
#: ``"key": value`` as JSON writes it, or escaped once inside a JSON string
#: (``\"key\":\"value\"``); a string value may be cut off by the end of the line.
_PAIR = re.compile(
    r'(?P<q>\\?)"(?P<key>[^"\\]{1,128})(?P=q)"\s*:\s*'
    r'(?P<value>(?P=q)"(?:[^"\\]|\\.)*?(?:(?P=q)"|\Z)|[^\s,}\]]+)'
)


def _combined(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One pattern that finds any of ``patterns`` (leading global flags made scoped)."""
    parts = []
    for pattern in patterns:
        text = pattern.pattern
        flags = _LEADING_FLAGS.match(text)
        parts.append(f"(?{flags[1]}:{text[flags.end() :]})" if flags else f"(?:{text})")
    try:
        return re.compile("|".join(parts))
    except re.error:
        return None


class Redactor:
    """Applies the configured rules to records and raw lines.

    :param keys: patterns searched (case-insensitively) in field names.
    :param patterns: patterns searched in string values and raw lines.
    """

    def __init__(self, keys: tuple[str, ...], patterns: tuple[str, ...]) -> None:
        self._key = re.compile("|".join(f"(?:{k})" for k in keys), re.IGNORECASE) if keys else None
        self._patterns = [re.compile(p) for p in patterns]
        self._any = _combined(self._patterns) if self._patterns else None
        self._secret_keys: dict[str, bool] = {}
        self._clean_values: dict[str, bool] = {}

    def text(self, value: str) -> str:
        """``value`` with every secret-looking part replaced by :data:`MASK`."""
        if not self._patterns:
            return value
        short = len(value) <= _SHORT
        if short and value in self._clean_values:
            return value
        if self._any is not None and self._any.search(value) is None:
            if short:
                _remember(self._clean_values, value, True)
            return value
        for pattern in self._patterns:
            value = pattern.sub(_replace, value)
        return value

    def line(self, raw: str) -> str:
        """A raw line with every secret-looking part replaced: the values of secret keys
        wherever ``"key": value`` appears in it, then the value patterns (:meth:`text`)."""
        if self._key is not None and '"' in raw:
            raw = _PAIR.sub(self._hide_pair, raw)
        return self.text(raw)

    def _hide_pair(self, match: re.Match[str]) -> str:
        quote = match["q"]
        value = match["value"]
        empty = (f'{quote}"{quote}"', "null", f'{quote}"{MASK}{quote}"')
        if value in empty or not self._is_secret_key(match["key"]):
            return match[0]
        kept = match[0][: match.start("value") - match.start()]
        return f'{kept}{quote}"{MASK}{quote}"'

    def _is_secret_key(self, key: str) -> bool:
        known = self._secret_keys.get(key)
        if known is None:
            known = self._key is not None and self._key.search(key) is not None
            _remember(self._secret_keys, key, known)
        return known

    def record(self, record: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """A redacted copy of ``record`` (the same object if nothing was hidden)."""
        changed, out = self._value(record, 0)
        return (out, True) if changed else (record, False)

    def _value(self, value: Any, depth: int) -> tuple[bool, Any]:
        if isinstance(value, str):
            redacted = self.text(value)
            return redacted != value, redacted
        if depth >= _MAX_DEPTH:
            return False, value
        if isinstance(value, dict):
            changed, out = False, {}
            for key, item in value.items():
                if isinstance(key, str) and self._is_secret_key(key):
                    hidden = item is not None and item != "" and item != MASK
                    changed = changed or hidden
                    out[key] = MASK if hidden else item
                    continue
                item_changed, out[key] = self._value(item, depth + 1)
                changed = changed or item_changed
            return changed, out
        if isinstance(value, list):
            results = [self._value(item, depth + 1) for item in value]
            if any(c for c, _ in results):
                return True, [v for _, v in results]
        return False, value


def _remember(cache: dict[str, bool], key: str, value: bool) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value


def _replace(match: re.Match[str]) -> str:
    if match.re.groups and match.group(1) is not None:
        start, end = match.span(1)
        whole_start = match.start()
        text = match.group(0)
        return text[: start - whole_start] + MASK + text[end - whole_start :]
    return MASK
