"""Prometheus metrics of one app: its own registry, the RED metrics, a business-metric API.

Each app gets a :class:`Metrics` in ``Observe.state(app).metrics`` with a registry of its own
(two apps in one process never collide). Under a pre-fork server with
``PROMETHEUS_MULTIPROC_DIR`` set, values go through prometheus_client's multiprocess files
and ``/metrics`` reports the sum over every worker (see :mod:`.multiprocess`).

The host defines its own metrics through the same object::

    scraped = observe.metrics.counter(
        "scraper_accounts_scraped_total", "Accounts scraped.", ["platform", "status"]
    )
    scraped.labels("twitter", "ok").inc()

Asking again for a metric of the same name returns the same object (so a view may ask on
each request), and names are checked against the naming rules of the Prometheus docs.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._internal import FailureLog
from .multiprocess import collect_registry, multiprocess_dir

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    from .http import HttpMetrics

__all__ = ["MetricNameError", "Metrics"]

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: Unit suffixes the Prometheus docs ask to replace with the base unit.
_NON_BASE_UNITS = {
    "milliseconds": "seconds",
    "microseconds": "seconds",
    "nanoseconds": "seconds",
    "minutes": "seconds",
    "hours": "seconds",
    "ms": "seconds",
    "kilobytes": "bytes",
    "megabytes": "bytes",
    "gigabytes": "bytes",
    "percent": "ratio",
}
_RESERVED_LABELS = frozenset(("le", "quantile"))
_render_failures = FailureLog()


class MetricNameError(ValueError):
    """A metric or label name breaks the Prometheus naming rules; the message says which."""


def check_name(name: str, kind: str, labelnames: Iterable[str]) -> None:
    """Apply the naming rules of https://prometheus.io/docs/practices/naming/.

    :raises MetricNameError: naming the rule broken.
    """
    if not _NAME.fullmatch(name) or name.startswith("__"):
        raise MetricNameError(
            f"{name!r}: metric names are [a-zA-Z_][a-zA-Z0-9_]* (no colons: those are for"
            " recording rules) and do not start with '__'"
        )
    unit = name.rsplit("_", 2)[-2] if name.endswith("_total") else name.rsplit("_", 1)[-1]
    if unit in _NON_BASE_UNITS:
        raise MetricNameError(f"{name!r}: use base units ({_NON_BASE_UNITS[unit]}), not {unit}")
    if kind == "counter" and not name.endswith("_total"):
        raise MetricNameError(f"{name!r}: a counter's name ends with '_total'")
    if kind != "counter" and name.endswith("_total"):
        raise MetricNameError(f"{name!r}: '_total' is for counters")
    if kind == "histogram" and name.endswith(("_bucket", "_count", "_sum")):
        raise MetricNameError(f"{name!r}: '_bucket', '_count' and '_sum' are added for you")
    for label in labelnames:
        if not _LABEL.fullmatch(label) or label.startswith("__") or label in _RESERVED_LABELS:
            raise MetricNameError(f"{name!r}: invalid or reserved label name {label!r}")


class Metrics:
    """The metrics of one app.

    :param registry: where this app's metrics live (a fresh ``CollectorRegistry`` if omitted).
    :param buckets: duration histogram buckets of the RED metrics.
    :param excluded: the shared exclusion predicate (excluded paths are not measured).
    :param exemplars: attach trace IDs to the duration histogram.
    :param process_metrics: add prometheus_client's process and platform collectors
        (single-process mode only; under gunicorn each worker is a different process).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5, 10),
        excluded: Callable[[str], bool] | None = None,
        exemplars: bool = True,
        process_metrics: bool = True,
    ) -> None:
        from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

        from .http import HttpMetrics

        self.registry: CollectorRegistry = registry or CollectorRegistry()
        #: ``PROMETHEUS_MULTIPROC_DIR`` when prometheus_client runs in multiprocess mode.
        self.multiprocess_dir = multiprocess_dir()
        self.buckets = tuple(buckets)
        self.http: HttpMetrics = HttpMetrics(
            self.registry, buckets, excluded, exemplars, self.multiprocess_dir is not None
        )
        if process_metrics and self.multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self._defined: dict[str, tuple[str, tuple[str, ...], Any]] = {}
        self._lock = threading.Lock()
        #: Called (guarded) before each exposition: samplers that bring a value up to date.
        self.before_render: list[Callable[[], object]] = []

    # -- business-metric API ---------------------------------------------------------------

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        """A counter (name ending in ``_total``); the same object for the same name."""
        from prometheus_client import Counter

        return self._define(  # type: ignore[no-any-return]
            "counter",
            name,
            labelnames,
            lambda: Counter(name, documentation, labelnames, registry=self.registry),
        )

    def gauge(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        multiprocess_mode: str = "livesum",
    ) -> Gauge:
        """A gauge; ``multiprocess_mode`` says how workers' values combine under gunicorn
        (``livesum``, ``max``, ``min``, ``mostrecent``, ``liveall``…, see prometheus_client)."""
        from prometheus_client import Gauge

        return self._define(  # type: ignore[no-any-return]
            "gauge",
            name,
            labelnames,
            lambda: Gauge(
                name,
                documentation,
                labelnames,
                registry=self.registry,
                multiprocess_mode=multiprocess_mode,  # type: ignore[arg-type]
            ),
        )

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] | None = None,
    ) -> Histogram:
        """A histogram (name ending in the unit, e.g. ``_seconds``); default buckets are the
        request-duration ones."""
        from prometheus_client import Histogram

        chosen = tuple(buckets) if buckets is not None else self.buckets
        return self._define(  # type: ignore[no-any-return]
            "histogram",
            name,
            labelnames,
            lambda: Histogram(
                name, documentation, labelnames, buckets=chosen, registry=self.registry
            ),
        )

    def _define(
        self, kind: str, name: str, labelnames: Sequence[str], make: Callable[[], Any]
    ) -> Any:
        labels = tuple(labelnames)
        known = self._defined.get(name)
        if known is None:
            with self._lock:
                known = self._defined.get(name)
                if known is None:
                    check_name(name, kind, labels)
                    known = (kind, labels, make())
                    self._defined[name] = known
        if known[:2] != (kind, labels):
            raise MetricNameError(
                f"{name!r} is already a {known[0]} with labels {list(known[1])}; asked for a"
                f" {kind} with labels {list(labels)}"
            )
        return known[2]

    # -- exposition ------------------------------------------------------------------------

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scraper that sent ``Accept: accept``: OpenMetrics (with
        exemplars) when it asks for it, the Prometheus text format otherwise.

        :returns: the body and its content type.
        """
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        for sample in self.before_render:
            try:
                sample()
            except Exception:
                _render_failures("a metrics sampler before a scrape")
        source: Any = self.registry
        if self.multiprocess_dir is not None:
            source = collect_registry(self.multiprocess_dir)
        return encoder(source), content_type

    def names(self) -> set[str]:
        """Every sample name this app exports (``http_requests_total``, ``…_bucket``, …)."""
        out: set[str] = set()
        for family in self.registry.collect():
            out.add(family.name)
            out.update(sample.name for sample in family.samples)
            if family.type == "counter":
                out.add(family.name + "_total")
            if family.type == "histogram":
                out.update(family.name + s for s in ("_bucket", "_count", "_sum"))
        return out
