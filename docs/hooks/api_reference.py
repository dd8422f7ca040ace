"""MkDocs hook: ``<!-- api-reference -->`` on a page becomes one mkdocstrings entry per public
name of ``flask_observe.__all__``, so the API page follows the package's exports as they
change (a name added to ``__all__`` appears, a removed one goes) without a list to keep.

Each name gets its own entry rather than ``::: flask_observe`` as a whole, which would render
the package docstring's doctest as text.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

PLACEHOLDER = "<!-- api-reference -->"
#: A dataclass with more fields than this is shown without its (one line per field) signature.
_LONG_SIGNATURE = 12


def _entry(package: Any, name: str) -> str:
    obj = getattr(package, name)
    lines = [f"::: {package.__name__}.{name}"]
    if dataclasses.is_dataclass(obj) and len(dataclasses.fields(obj)) > _LONG_SIGNATURE:
        lines += ["    options:", "      show_signature: false"]
    return "\n".join(lines)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if PLACEHOLDER not in markdown:
        return markdown
    package = importlib.import_module("flask_observe")
    names = [name for name in package.__all__ if not name.startswith("_")]
    return markdown.replace(PLACEHOLDER, "\n\n".join(_entry(package, n) for n in names))
