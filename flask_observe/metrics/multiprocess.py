"""gunicorn and other pre-fork servers: prometheus_client's multiprocess mode, kept bounded.

prometheus_client writes each process's values to ``<kind>_<pid>.db`` files in
``PROMETHEUS_MULTIPROC_DIR`` and sums them at scrape time. Its ``mark_process_dead`` removes
only the live-gauge files of a dead worker, so every recycled worker (``max_requests``) would
leave its counter and histogram files behind, and scrapes slow down as they pile up. Here a
dead worker's files are merged into one ``<kind>_archive.db`` file per kind (counters,
histograms and summaries add; ``sum``/``max``/``min``/``mostrecent`` gauges combine as their
mode says; per-pid ``all`` gauges of a dead process are dropped), so the directory holds at most
one set of files per live worker plus the archives.

Merging and scraping take a lock file (exclusive for a merge, shared for a scrape), so a scrape
never sees a dead worker counted twice or not at all.

A scrape adds the files' values in directory order, and a merge adds a dead worker's values
to the archive's: the same amounts, added in another order. With any float, that can come out
an ulp lower than the scrape before, which Prometheus' ``rate()`` reads as a counter reset (a
spike of the whole total). So every fractional amount flask_observe adds to a counter or a
histogram's sum is a whole number of :data:`QUANTUM` (2**-20 s, about a microsecond; rounded
down, :func:`exact`): sums of those are exact, in any order, while they stay under 2**33
(seconds of latency summed over every worker since the directory was last wiped: 2.7 years
at 100 s of it a second). Rounded down, a value on a bucket's bound stays in that bucket
where the public ``observe()`` takes the rounded value; each value is counted up to one
quantum short (on average half: 0.5 µs).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "QUANTUM",
    "SCALE",
    "collect_registry",
    "exact",
    "gunicorn_workers",
    "mark_process_dead",
    "multiprocess_dir",
    "wipe",
]

ARCHIVE = "archive"
_LOCK_NAME = ".flask_observe.lock"
_ADDING_KINDS = ("counter", "histogram", "summary")
_GAUGE_MERGE = {"sum", "max", "min", "mostrecent"}
#: Fractional amounts added to counters and histogram sums are whole multiples of QUANTUM
#: (``int(x * SCALE) * QUANTUM``: both powers of two, so the product is exact).
SCALE = 2.0**20
QUANTUM = 1 / SCALE


def exact(amount: float) -> float:
    """``amount`` in whole :data:`QUANTUM`, rounded toward zero (see the module's notes)."""
    return int(amount * SCALE) * QUANTUM


def multiprocess_dir() -> str | None:
    """The directory prometheus_client uses in multiprocess mode (its own env variable)."""
    environ = os.environ
    # The lower-case name is the one older prometheus_client releases read; it still does.
    return environ.get("PROMETHEUS_MULTIPROC_DIR") or environ.get("prometheus_multiproc_dir")


def gunicorn_workers() -> tuple[str, int] | None:
    """Whether this code runs inside gunicorn, and how many workers it was told to run:
    ``("worker", n)`` in a worker process, ``("master", n)`` in the master (``--preload``),
    ``None`` outside gunicorn.

    gunicorn loads the app from its worker's (or, preloading, its arbiter's) own methods, so
    the object is a caller of this code: it is found on the stack, by class, without importing
    gunicorn or reading its command line (``-w``, ``WEB_CONCURRENCY``, a config file all end
    up in ``cfg.workers``).
    """
    kinds = []
    for module, name, role in (
        ("gunicorn.workers.base", "Worker", "worker"),
        ("gunicorn.arbiter", "Arbiter", "master"),
    ):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            kinds.append((cls, role))
    if not kinds:
        return None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        for cls, role in kinds:
            if isinstance(owner, cls):
                workers = getattr(owner, "num_workers", None)
                if not isinstance(workers, int):
                    workers = getattr(getattr(owner, "cfg", None), "workers", None)
                return (role, workers) if isinstance(workers, int) else None
        frame = frame.f_back
    return None


@contextlib.contextmanager
def _locked(path: str, exclusive: bool) -> Iterator[None]:
    fd = os.open(os.path.join(path, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def wipe(path: str) -> None:
    """Remove the ``*.db`` files of the directory (creating it if needed); call once in the
    master before workers start.

    prometheus_client sums every ``*.db`` file it finds there, so files left by a previous run
    would be added to this run's counters. Nothing else is touched: a directory set by mistake
    (``/tmp``, the app's own) loses no other file.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.glob("*.db"):
        if entry.is_file() or entry.is_symlink():
            entry.unlink()


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """Forget a dead worker without losing what it counted (call from gunicorn's
    ``child_exit`` in the master)."""
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    path = path or multiprocess_dir()
    if not path:
        return
    with _locked(path, exclusive=True):
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        for kind in _ADDING_KINDS:
            _merge(
                os.path.join(path, f"{kind}_{pid}.db"),
                os.path.join(path, f"{kind}_{ARCHIVE}.db"),
                "sum",
                MmapedDict,
            )
        for dead in glob.glob(os.path.join(path, f"gauge_*_{pid}.db")):
            mode = os.path.basename(dead)[len("gauge_") : -len(f"_{pid}.db")]
            if mode in _GAUGE_MERGE:
                archive = os.path.join(path, f"gauge_{mode}_{ARCHIVE}.db")
                _merge(dead, archive, mode, MmapedDict)
            else:
                os.remove(dead)


def _merge(dead: str, archive: str, mode: str, mmaped_dict: Any) -> None:
    if not os.path.exists(dead):
        return
    values = list(mmaped_dict.read_all_values_from_file(dead))
    existing: dict[str, tuple[float, float]] = {}
    if os.path.exists(archive):
        for key, value, timestamp, _pos in mmaped_dict.read_all_values_from_file(archive):
            existing[key] = (value, timestamp)
    target = mmaped_dict(archive)
    try:
        for key, value, timestamp, _pos in values:
            known = key in existing
            old, old_ts = existing.get(key, (0.0, 0.0))
            if mode == "sum" or not known:
                new, new_ts = (old + value if mode == "sum" else value), max(old_ts, timestamp)
            elif mode == "max":
                new, new_ts = max(old, value), max(old_ts, timestamp)
            elif mode == "min":
                new, new_ts = min(old, value), max(old_ts, timestamp)
            else:  # mostrecent
                new, new_ts = (value, timestamp) if timestamp >= old_ts else (old, old_ts)
            target.write_value(key, new, new_ts)
    finally:
        target.close()
    os.remove(dead)


def collect_registry(path: str) -> object:
    """A registry holding every process's values, read under the shared lock."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    collector = MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return _SnapshotRegistry(collector, path)


class _SnapshotRegistry:
    """Collects the multiprocess files under the shared lock (a merge cannot run meanwhile)."""

    def __init__(self, collector: object, path: str) -> None:
        self._collector = collector
        self._path = path

    def collect(self) -> Iterator[object]:
        with _locked(self._path, exclusive=False):
            metrics = list(self._collector.collect())  # type: ignore[attr-defined]
        yield from metrics
