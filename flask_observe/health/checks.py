"""What a health check is: a small dataclass with a ``run()`` that raises on failure.

A check's settings are its fields; secrets among them are ``field(repr=False)``. ``run()``
returns nothing (the runner then reports how long it took), or one or more
:class:`Observation` objects (a measured value with its own status, e.g. disk utilisation),
and raises :class:`CheckFailed` or :class:`CheckWarning` with a message fit to show. Any other
exception becomes ``"unknown error"`` in the output, its traceback logged, never shown.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from .. import _optional

__all__ = [
    "LIVENESS",
    "READINESS",
    "STARTUP",
    "CheckFailed",
    "CheckWarning",
    "FunctionCheck",
    "HealthCheck",
    "Observation",
    "StartupGate",
    "Status",
    "redact",
]

LIVENESS = "liveness"
READINESS = "readiness"
STARTUP = "startup"
GROUPS = (LIVENESS, READINESS, STARTUP)

#: Longest ``output`` shown for one check; driver messages can be long.
MAX_OUTPUT = 300


class Status(str, Enum):
    """The three values of ``status`` in application/health+json."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __str__(self) -> str:
        return self.value


_RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


def worst(statuses: Iterable[Status]) -> Status:
    """The worst of ``statuses`` (``pass`` for none)."""
    out = Status.PASS
    for status in statuses:
        if status.rank > out.rank:
            out = status
    return out


class CheckFailed(Exception):
    """Raised by ``run()``: the dependency is not usable. The message is shown (redacted)."""


class CheckWarning(Exception):
    """Raised by ``run()``: usable, with a concern (``warn``). The message is shown."""


_NAME = re.compile(r"[A-Za-z0-9._~@-][A-Za-z0-9._~@ -]{0,63}")


@dataclass
class Observation:
    """One entry of the document's ``checks`` map: ``"<component>:<measurement>"``.

    :param measurement: ``responseTime``, ``utilization``, ``connections``, ``uptime`` (the
        draft's own names) or any other; ``None`` keys the entry by the component alone.
    :param value: ``observedValue``; any JSON value.
    :param unit: ``observedUnit`` (``ms``, ``percent``, ``MiB``, ``s`` …).
    :param component: defaults to the check's name.
    :param extra: additional keys of the entry (the draft allows them), shown with details.
    """

    measurement: str | None = "responseTime"
    value: Any = None
    unit: str | None = None
    status: Status = Status.PASS
    output: str | None = None
    component: str | None = None
    component_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class HealthCheck:
    """Base class of every check. Subclass it and implement :meth:`run`.

    :param name: unique per app; the ``componentName`` of its entries (no ``:``).
    :param critical: a failure fails the whole service (503); otherwise it only warns.
    :param timeout: deadline in seconds, enforced by the runner with threads; ``None``
        takes ``OBSERVE_HEALTH_DEFAULT_TIMEOUT``.
    :param groups: which probes run it: ``"liveness"``, ``"readiness"``, ``"startup"``.
        The full report (``/health``) runs every check.
    :param cache_ttl: seconds its result is reused; ``None`` takes ``OBSERVE_HEALTH_CACHE_TTL``.
    """

    name: str
    critical: bool = True
    timeout: float | None = None
    groups: tuple[str, ...] = (READINESS,)
    cache_ttl: float | None = None

    #: ``componentType`` of its entries: ``component``, ``datastore`` or ``system``.
    component_type: ClassVar[str] = "component"
    #: Cheap and non-blocking (reads memory only): run in the caller's thread, no deadline.
    inline: ClassVar[bool] = False
    #: The optional packages the check needs, as ``(module, extra)``: checked when the check
    #: is registered, so a missing driver fails start-up with the extra to install instead of
    #: answering "unknown error" at every probe.
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"health check name {self.name!r}: 1-64 letters, digits, '.', '_', '-', '~',"
                " '@' or spaces (no ':', which separates component and measurement)"
            )
        if isinstance(self.groups, str):
            self.groups = (self.groups,)
        self.groups = tuple(self.groups)
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown:
            raise ValueError(f"health check {self.name!r}: unknown group(s) {unknown}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"health check {self.name!r}: timeout must be > 0")

    def check_requirements(self) -> None:
        """:raises MissingDependencyError: a package of :attr:`requires` is not installed."""
        for module, extra in self.requires:
            _optional.require(module, extra, f"{type(self).__name__} {self.name!r}")

    def run(self) -> Observation | Iterable[Observation] | None:
        """Check the dependency once; raise on failure.

        :raises CheckFailed: not usable (message shown, after redaction).
        :raises CheckWarning: usable with a concern.
        """
        raise NotImplementedError

    def secrets(self) -> Iterable[str]:
        """Strings never to be shown in output (passwords, full URLs); redacted if seen."""
        return ()

    def close(self) -> None:
        """Release resources (engines, clients) when the app shuts down."""


@dataclass
class FunctionCheck(HealthCheck):
    """A check made from a function (``@observe.health_check("name")``).

    The function takes no arguments, runs inside the app context, and may return ``None``,
    an :class:`Observation`, a list of them, or a ``bool``/``str`` (``False``: fail;
    a string: a warning with that text).
    """

    func: Callable[[], Any] | None = field(default=None, repr=False)

    def run(self) -> Observation | Iterable[Observation] | None:
        if self.func is None:
            raise CheckFailed("no function")
        value = self.func()
        if value is None or value is True:
            return None
        if value is False:
            raise CheckFailed(f"{self.name} returned False")
        if isinstance(value, str):
            raise CheckWarning(value)
        return value  # type: ignore[no-any-return]


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")
_PASSWORD = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)\s*[=:]\s*\S+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets, URL credentials or ``password=…`` pairs.

    Output is also cut to one line of at most ``MAX_OUTPUT`` characters.
    """
    for secret in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _PASSWORD.sub(lambda m: f"{m.group(1)}=***", text)
    text = " ".join(text.split())
    if len(text) > MAX_OUTPUT:
        text = text[: MAX_OUTPUT - 1] + "…"
    return text


@dataclass
class StartupGate(HealthCheck):
    """Fails until ``started`` is set (``OBSERVE_HEALTH_WAIT_FOR_STARTUP``): registered by the
    runner as ``startup`` in the readiness and startup groups."""

    groups: tuple[str, ...] = (READINESS, STARTUP)
    cache_ttl: float | None = 0.0
    started: threading.Event = field(default_factory=threading.Event, repr=False)

    component_type = "system"
    inline = True

    def run(self) -> Observation:
        if not self.started.is_set():
            raise CheckFailed("start-up not complete")
        return Observation("completed", True)
