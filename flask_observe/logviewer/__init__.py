"""The log viewer: list, search and tail the app's own log files, over a JSON API, a
browser page and the CLI — bounded, redacted and behind the shared auth.

- :mod:`.store` — which files may be read; :mod:`.readers` — reading them (plain, gzip);
- :mod:`.query` — a search's filters and its cursor; :mod:`.lines` — one line's fields;
- :mod:`.match` — whether a line matches, and finding candidates fast;
- :mod:`.search` — a page of results within the limits; :mod:`.timerange` — time bisection;
- :mod:`.follow` — live tail across rotations, every file by inode; :mod:`.positions` —
  where a tail is; :mod:`.redact` — hiding secrets at read time; :mod:`.signing` — cursors
  and positions that cannot be forged;
- :mod:`.viewer` — the per-app object; :mod:`.views`, :mod:`.streams` and :mod:`.session` —
  HTTP; :mod:`.cli` — ``flask observe logs``.

See docs/logviewer.md.
"""

from __future__ import annotations

from .query import Query, QueryError
from .search import Limits, Page
from .viewer import LogViewer

__all__ = ["Limits", "LogViewer", "Page", "Query", "QueryError"]
