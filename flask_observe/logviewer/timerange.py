"""Time ranges without scanning: whole files skipped by their rotation times, and the part
of a plain file inside ``[since, until)`` found by bisecting on line timestamps.

Files are written in time order (one process appends; several processes sharing a file
interleave by milliseconds), so both steps widen their bounds by :data:`SLACK_SECONDS` and
the scan then checks each line's timestamp exactly: the range narrows the work, never the
answer — unless a file's lines are out of order by more than the slack.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from .lines import format_time, line_timestamp
from .readers import PlainReader
from .store import LogFile

__all__ = ["SLACK_SECONDS", "byte_range", "prune"]

SLACK_SECONDS = 5.0
#: Below this many bytes the bisection stops and the scan takes over.
_GRANULE = 16 * 1024
#: Raw (untimestamped) lines skipped at a probe before the bisection gives up.
_MAX_RAW_SKIP = 32


def _epoch(canonical: str) -> float:
    return dt.datetime.fromisoformat(canonical.replace("Z", "+00:00")).timestamp()


def prune(files: list[LogFile], since: str | None, until: str | None) -> list[LogFile]:
    """``files`` (oldest first) without those that cannot hold a line in ``[since, until)``.

    A rotated file holds lines from the previous rotation of its stream up to its own
    rotation time (in its name); an active file from its stream's last rotation onwards.
    """
    if not since and not until:
        return files
    low = _epoch(since) - SLACK_SECONDS if since else float("-inf")
    high = _epoch(until) + SLACK_SECONDS if until else float("inf")
    previous: dict[str, float] = {}
    kept = []
    for f in files:
        begins = previous.get(f.stream, float("-inf"))
        ends = f.rotated_at if f.rotated_at is not None else float("inf")
        if f.rotated_at is not None:
            previous[f.stream] = f.rotated_at
        if ends >= low and begins <= high:
            kept.append(f)
    return kept


def byte_range(reader: PlainReader, since: str | None, until: str | None) -> tuple[int, int]:
    """``[lo, hi)``: byte offsets (line starts) that hold every line in ``[since, until)``."""
    lo, hi = 0, reader.end
    if since:
        target = format_time(_epoch(since) - SLACK_SECONDS)
        lo = _bisect(reader, lambda stamp: stamp < target, lo, hi, default=lo)
    if until:
        target = format_time(_epoch(until) + SLACK_SECONDS)
        hi = _bisect(reader, lambda stamp: stamp < target, lo, hi, default=hi, upper=True)
    return lo, max(lo, hi)


def _bisect(
    reader: PlainReader,
    before: Callable[[str], bool],
    lo: int,
    hi: int,
    *,
    default: int,
    upper: bool = False,
) -> int:
    """The first line start in ``[lo, hi)`` whose timestamp is not ``before`` the target.

    Returns ``lo``-side bound for a lower limit and ``hi``-side for an upper one, so the
    exact answer is always inside the returned range; ``default`` if probing fails.
    """
    a, b = lo, hi
    while b - a > _GRANULE:
        mid = (a + b) // 2
        probe = _probe(reader, mid, b)
        if probe is None:
            return default
        start, end, stamp = probe
        if start >= b:
            break  # no line starts in [mid, b): the one around mid runs up to b
        if before(stamp):
            a = end
        else:
            b = start
    return b if upper else a


def _probe(reader: PlainReader, offset: int, limit: int) -> tuple[int, int, str] | None:
    """``(start, end, timestamp)`` of the first timestamped line at or after ``offset``."""
    for _ in range(_MAX_RAW_SKIP):
        found = reader.line_at(offset)
        if found is None:
            return (limit, limit, "") if offset < limit else None
        start, line = found
        end = start + len(line) + 1
        stamp = line_timestamp(line)
        if stamp is not None:
            return start, end, stamp
        offset = end
    return None
