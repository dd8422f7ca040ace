"""Griffe extension for the API page: the package's reST habits, rendered as Markdown.

The docstrings use Sphinx's conventions (``:param:`` fields, which mkdocstrings' sphinx style
reads; cross-reference roles such as ``:class:`~flask_observe.metrics.Metrics```; ``>>>``
doctest blocks). The last two mean nothing to Markdown: a role shows up as raw text and a
doctest as a nested quotation. Here each role becomes inline code (``~`` keeps the last
component, as Sphinx does) and each doctest block a ``pycon`` code block, before rendering.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

_ROLE = re.compile(r":(?:py:)?(?:meth|class|func|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    target = match[2].strip()
    if match[1]:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _fence_doctests(text: str) -> str:
    out: list[str] = []
    in_block = False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(">>>") and not in_block:
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            in_block = True
        elif in_block and not stripped:
            out.append(f"{indent}```")
            in_block = False
        out.append(line)
    if in_block:
        out.append(f"{indent}```")
    return "\n".join(out)


class SphinxToMarkdown(Extension):
    """Rewrites roles and doctest blocks of every docstring griffe loads."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _fence_doctests(_ROLE.sub(_role, obj.docstring.value))
