"""The console: the app's traces, errors and runtime controls in the browser, behind the
log viewer's sign-in, with no server besides the app (docs/console.md).

- :mod:`.pages` — :class:`Console` (the per-app handle) and :class:`Page`: how a page is
  added; :mod:`.views` — the blueprint; :mod:`.setup` — the feature and its sections.
"""

from __future__ import annotations

from .pages import Console, Page

__all__ = ["Console", "Page"]
