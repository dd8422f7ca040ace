"""Configuration: how an ``OBSERVE_*`` key is declared, parsed and validated.

Each feature declares its keys in a frozen dataclass of its own (``<feature>/settings.py``):
one field per key, ``OBSERVE_`` + the field's name in capitals, its default and its parser
side by side (:func:`key`). The extension composes every feature's settings and
:class:`CoreSettings` into one frozen ``ObserveConfig`` (one object, one attribute per key),
read once in :meth:`Observe.init_app`. Values may come from ``app.config`` (set in code or
through Flask's ``app.config.from_prefixed_env()``, i.e. ``FLASK_OBSERVE_*`` environment
variables, which Flask parses as JSON when it can) or from keyword options given to
``Observe(...)``, which act as defaults that ``app.config`` overrides.

A parser accepts a Python object (set in code) or a string (an environment variable Flask
could not parse as JSON) and raises ``ValueError`` saying what it expects; the key's name is
added by :func:`load_config`. Rules that involve several keys are a feature's ``check``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["ConfigError", "CoreSettings", "config_keys", "key", "load_config"]

PREFIX = "OBSERVE_"

C = TypeVar("C")
Parser = Callable[[Any], Any]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and what it expects."""


def key(default: Any, parse: Parser, *, secret: bool = False) -> Any:
    """Declare one ``OBSERVE_*`` key: a dataclass field with its default and its parser.

    :param default: the value when the key is not set (a mutable one is copied per config).
    :param parse: turns a raw value into the field's value; raises ``ValueError`` saying what
        it expects.
    :param secret: the value is never echoed (errors, ``flask observe config``, repr).
    """
    metadata = {"parse": parse, "secret": secret}
    if isinstance(default, (dict, list, set)):
        value = default
        return dataclasses.field(
            default_factory=lambda: type(value)(value), metadata=metadata, repr=not secret
        )
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


# -- parsers shared by the features' settings -------------------------------------------------


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
    raise ValueError("expected a boolean (true/false)")


def opt_boolean(value: Any) -> bool | None:
    """``True``, ``False`` or ``None`` (``"auto"``: decided from the environment)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    return boolean(value)


def integer(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError("expected an integer") from None
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise ValueError(f"expected an integer >= {minimum}{upper}")
        return number

    return parse


def number(minimum: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise ValueError("expected a number") from None
        if result < minimum or result != result or result == float("inf"):
            raise ValueError(f"expected a finite number >= {minimum}")
        return result

    return parse


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def opt_text(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return text(value)


def choice(*choices: str, optional: bool = False) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        if optional and (value is None or value == ""):
            return None
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"expected one of {allowed}" + (" or None" if optional else ""))

    return parse


def str_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except ValueError:
                raise ValueError("expected a list of strings or a comma-separated string") from None
        else:
            value = stripped.split(",")
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise ValueError("expected a list of strings or a comma-separated string")


def patterns(value: Any) -> tuple[str, ...]:
    """Regular expressions (each compiled once here, so a bad one fails at start-up)."""
    found = str_tuple(value)
    for pattern in found:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return found


def opt_patterns(value: Any) -> tuple[str, ...] | None:
    return None if value is None else patterns(value)


def ratio(value: Any) -> float:
    """A share from 0 (included) to 1 (excluded)."""
    result = number(0.0)(value)
    if result >= 1.0:
        raise ValueError("expected a number >= 0 and < 1")
    return result


def opt_ratio(value: Any) -> float | None:
    """A share from 0 to 1 (both included), or ``None``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    result = number(0.0)(value)
    if result > 1.0:
        raise ValueError("expected a number from 0 to 1")
    return result


def subset(allowed: tuple[str, ...]) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        names = tuple(v.lower() for v in str_tuple(value))
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise ValueError(f"unknown name(s) {', '.join(unknown)}; known: {', '.join(allowed)}")
        return tuple(dict.fromkeys(names))

    return parse


def url_prefix(value: Any) -> str:
    prefix = text(value).rstrip("/")
    if not prefix.startswith("/") or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", prefix):
        raise ValueError("expected a URL path such as '/health' (letters, digits, '.', '_', '-')")
    return prefix


def url_path(value: Any) -> str:
    path = text(value)
    if not path.startswith("/") or any(c in path for c in "<>?#"):
        raise ValueError("expected a URL path starting with '/'")
    return path


def file_name(value: Any) -> str:
    name = text(value)
    if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise ValueError("expected a plain file name (no directories)")
    return name


def file_names(value: Any) -> tuple[str, ...]:
    return tuple(file_name(v) for v in str_tuple(value))


def secret(minimum: int) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value.strip()) < minimum:
            raise ValueError(f"expected a string of at least {minimum} characters")
        return value.strip()

    return parse


#: The longest bearer token accepted (a sign-in form holding it stays within the few KiB
#: flask_observe's routes read).
MAX_TOKEN_LENGTH = 1024


def token(value: Any) -> str | None:
    """A bearer token that is hard to guess: 16 to 1024 characters, estimated to hold at least
    64 bits (:mod:`flask_observe._tokens`: character classes, runs, sequences, repeats, common
    passwords). The message says what was found (never the value) and how to make one."""
    from ._tokens import GOOD_TOKEN_COMMAND, MIN_BITS, estimate

    if value is None or value == "":
        return None
    make = f"make one with: {GOOD_TOKEN_COMMAND}"
    if not isinstance(value, str) or len(value.strip()) < 16:
        raise ValueError(f"expected a string of at least 16 characters; {make}")
    chosen = value.strip()
    if len(chosen) > MAX_TOKEN_LENGTH:
        raise ValueError(f"expected at most {MAX_TOKEN_LENGTH} characters")
    found = estimate(chosen)
    if not found.strong:
        raise ValueError(
            f"too easy to guess: about {found.bits:.0f} bits ({', '.join(found.patterns)}),"
            f" at least {MIN_BITS:.0f} needed; {make}"
        )
    return chosen


def import_callable(value: Any) -> Callable[..., Any] | None:
    """A callable, or a ``"module:attribute"`` string naming one."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        module_name, _, attr = value.partition(":")
        if not module_name or not attr:
            raise ValueError("expected a callable or a 'module:attribute' import string")
        try:
            value = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import {module_name}:{attr} ({exc})") from None
    if not callable(value):
        raise ValueError("expected a callable or a 'module:attribute' import string")
    return value  # type: ignore[no-any-return]


# -- the core's own keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class CoreSettings:
    """Keys of the core: the master switch, the service's identity, the shared auth, the
    shared exclusion list and the background sampler."""

    #: Master switch: ``False`` turns every feature off.
    enabled: bool = key(True, boolean)
    #: ``service`` field of every log line; defaults to the Flask app's name.
    service_name: str | None = key(None, opt_text)
    service_version: str | None = key(None, opt_text)
    environment: str | None = key(None, opt_text)
    #: Bearer token that grants access to the sensitive endpoints (health details, log
    #: viewer, ``/metrics`` if asked): 16+ characters, hard to guess (:func:`token`). Never
    #: logged or shown.
    auth_token: str | None = key(None, token, secret=True)
    #: ``callable(request) -> bool`` (or ``"module:attr"`` naming one) deciding access; when
    #: set it is asked instead of comparing the token.
    auth_callback: Callable[[Any], bool] | None = key(None, import_callable)
    #: Directory of the state the workers of one host share about sign-ins (failed attempts,
    #: sessions ended by sign-out); ``None``: ``flask_observe-<uid>`` in the temp directory.
    auth_state_dir: str | None = key(None, opt_text)
    #: Wrong tokens one client may send in a burst before it gets 429s; afterwards one per
    #: ``OBSERVE_AUTH_FAILURE_WINDOW_SECONDS / OBSERVE_AUTH_MAX_FAILURES`` seconds.
    auth_max_failures: int = key(10, integer(1, 10_000))
    auth_failure_window_seconds: float = key(60.0, number(1.0))
    #: Regular expressions searched in the request path; matching requests are left out of the
    #: access log, tracing and metrics. ``None``: the paths the features name (the health
    #: endpoints under ``OBSERVE_HEALTH_URL_PREFIX`` and ``OBSERVE_METRICS_PATH``).
    excluded_paths: tuple[str, ...] | None = key(None, opt_patterns)
    #: Period of the background sampler: memory, error budgets, in-process alert rules.
    sample_interval_seconds: float = key(15.0, number(0.05))


# -- reading a config -----------------------------------------------------------------------


def secret_keys(cls: type) -> frozenset[str]:
    """Names of the fields of ``cls`` whose values are never echoed."""
    return frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get("secret"))


def config_keys(cls: type) -> dict[str, Any]:
    """Every ``OBSERVE_*`` key of the settings class ``cls`` with its default value."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out[PREFIX + f.name.upper()] = default
    return out


def load_config(cls: type[C], app_config: Mapping[str, Any]) -> C:
    """Validate the ``OBSERVE_*`` keys of ``app_config`` into a ``cls`` (a settings class).

    :raises ConfigError: naming the first invalid key and what it expects, or the first
        ``OBSERVE_*`` key no feature declares.
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for f in fields:
        name = PREFIX + f.name.upper()
        if name not in app_config:
            continue
        raw = app_config[name]
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            shown = "<hidden>" if f.metadata.get("secret") else repr(raw)
            raise ConfigError(f"{name}: {exc}, got {shown}") from None
    known = {f.name for f in fields}
    unknown = sorted(
        k for k in app_config if k.startswith(PREFIX) and k[len(PREFIX) :].lower() not in known
    )
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown flask_observe setting (see docs/configuration.md for the keys)"
        )
    return cls(**values)


def compose(name: str, parts: Iterable[type]) -> type:
    """One frozen dataclass with the fields of every settings class in ``parts``, in order.

    :raises TypeError: two parts declare the same key.
    """
    parts = tuple(parts)
    seen: dict[str, str] = {}
    for part in parts:
        for f in dataclasses.fields(part):
            if f.name in seen:
                raise TypeError(
                    f"OBSERVE_{f.name.upper()} is declared by both {seen[f.name]} and"
                    f" {part.__qualname__}"
                )
            seen[f.name] = part.__qualname__
    # A dataclass collects the fields of its bases from the last base to the first.
    return dataclasses.make_dataclass(name, [], bases=tuple(reversed(parts)), frozen=True)
