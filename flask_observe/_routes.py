"""The paths flask_observe serves, kept apart from the host's own routes.

Two rules with the same path and a method in common cannot both answer: werkzeug serves the
one added first and the other is never reached, silently. So:

- a feature's ``check`` refuses to start (:func:`refuse_taken`, a ``ConfigError`` naming the
  setting that moves ours) when the host already has a route at one of its paths;
- its ``setup`` watches the app's URL map (:func:`watch`): a route the host adds later at one
  of those paths, which ours would hide, is warned about once, where it is defined.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config import ConfigError

if TYPE_CHECKING:
    from types import FrameType

    from flask import Flask
    from werkzeug.routing import Map, Rule

__all__ = ["Claim", "refuse_taken", "watch"]

logger = logging.getLogger("flask_observe")

#: Methods every rule answers or that Flask adds on its own: not a reason for a clash.
_IMPLIED = frozenset(("HEAD", "OPTIONS"))


@dataclass(frozen=True)
class Claim:
    """Paths one feature serves, and how to move them.

    :param key: the setting that moves them (``OBSERVE_HEALTH_URL_PREFIX``).
    :param what: what is served there, for the messages ("the health endpoints").
    :param routes: ``(path, methods)`` of each rule the feature adds.
    :param example: a value of ``key`` that moves them out of the way.
    """

    key: str
    what: str
    routes: tuple[tuple[str, frozenset[str]], ...]
    example: str

    def clash(self, rule: Rule) -> str | None:
        """The path of ours that ``rule`` would share (same path, a method in common)."""
        path = _normal(rule.rule)
        methods = frozenset(rule.methods or ()) - _IMPLIED
        for ours, our_methods in self.routes:
            if _normal(ours) == path and (methods & our_methods or not methods):
                return ours
        return None

    def advice(self) -> str:
        return (
            f"move ours with {self.key} (e.g. {self.key}={self.example!r}, and point whatever"
            " calls them there), or move or remove the app's route"
        )


def routes(
    *paths: str, methods: Iterable[str] = ("GET",)
) -> tuple[tuple[str, frozenset[str]], ...]:
    """``(path, methods)`` pairs for :class:`Claim`."""
    wanted = frozenset(m.upper() for m in methods)
    return tuple((path, wanted) for path in paths)


def _normal(path: str) -> str:
    return path.rstrip("/") or "/"


def _describe(rule: Rule) -> str:
    methods = ", ".join(sorted(frozenset(rule.methods or ()) - _IMPLIED)) or "any method"
    return f"{rule.rule!r} (endpoint {rule.endpoint!r}, {methods})"


def refuse_taken(app: Flask, claim: Claim) -> None:
    """Raise when a route of ``app`` already answers at one of ``claim``'s paths.

    :raises ConfigError: naming the route, ``claim.key`` and how to move ours.
    """
    for rule in app.url_map.iter_rules():
        ours = claim.clash(rule)
        if ours is not None:
            raise ConfigError(
                f"{claim.key}: the app already has a route at {_describe(rule)}, where"
                f" flask_observe would serve {claim.what} ({ours!r}); one of the two would"
                f" never answer. {claim.advice()[0].upper()}{claim.advice()[1:]}."
            )


#: Packages whose frames are not where a route is defined.
_FRAMEWORK = frozenset(("flask", "werkzeug", "flask_observe", "click", "blinker"))
#: Attribute of a URL map holding its :class:`_Watch`.
_WATCH_ATTR = "_flask_observe_watch"


class _Watch:
    """Wraps one URL map's ``add``: every rule added after it is checked against the claims
    (a rule the host adds later at one of our paths is hidden by ours)."""

    def __init__(self, url_map: Map) -> None:
        self.url_map = url_map
        self.original: Callable[..., Any] = url_map.add
        self.claims: list[Claim] = []

    def add(self, rulefactory: Any) -> None:
        before = set(map(id, self.url_map.iter_rules()))
        self.original(rulefactory)
        try:
            for rule in self.url_map.iter_rules():
                if id(rule) not in before:
                    self._judge(rule)
        except Exception:  # never break the host's route definitions
            logger.debug("flask_observe: checking a new route failed", exc_info=True)

    def _judge(self, rule: Rule) -> None:
        for claim in self.claims:
            ours = claim.clash(rule)
            if ours is not None:
                logger.warning(
                    "flask_observe: the route %s added at %s is hidden: flask_observe serves"
                    " %s there (%r), so requests never reach it; %s",
                    _describe(rule),
                    _caller(),
                    claim.what,
                    ours,
                    claim.advice(),
                    extra={"route": rule.rule, "setting": claim.key},
                )
                return


def _caller() -> str:
    """Where the route was defined: the first frame outside Flask, werkzeug and this module."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.partition(".")[0] not in _FRAMEWORK:
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def watch(app: Flask, claim: Claim) -> Callable[[], None]:
    """Warn when a rule added to ``app`` from now on clashes with ``claim``; returns the undo
    (the last one puts the map's own ``add`` back)."""
    url_map = app.url_map
    found = url_map.__dict__.get(_WATCH_ATTR)
    watcher = found if isinstance(found, _Watch) else None
    if watcher is None:
        watcher = _Watch(url_map)
        setattr(url_map, _WATCH_ATTR, watcher)
        url_map.add = watcher.add  # type: ignore[method-assign]
    watcher.claims.append(claim)
    active: _Watch = watcher

    def undo() -> None:
        if claim in active.claims:
            active.claims.remove(claim)
        if not active.claims and url_map.__dict__.get(_WATCH_ATTR) is active:
            if url_map.__dict__.get("add") == active.add:
                del url_map.__dict__["add"]
            del url_map.__dict__[_WATCH_ATTR]

    return undo
