"""The OTLP metrics' histograms (:mod:`flask_observe.otlp.histograms`) against the SDK's own
histogram aggregation, and under threads recording while the reader collects."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from flask_observe.otlp.histograms import FOLD_AT, Histogram_
from flask_observe.otlp.metrics import HTTP_BUCKETS


def _sdk_histogram(values: list[float], bounds: tuple[float, ...]) -> Any:
    """The SDK's own explicit-bucket histogram of ``values``: the peer the cells must agree
    with."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name="d", aggregation=ExplicitBucketHistogramAggregation(bounds))],
    )
    histogram = provider.get_meter("peer").create_histogram("d", unit="s")
    for value in values:
        histogram.record(value)
    data = reader.get_metrics_data()
    provider.shutdown()
    (point,) = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    return point


def test_a_histograms_cells_fold_to_what_the_sdks_own_histogram_aggregates() -> None:
    """Values queued on a cell and folded in batches (every FOLD_AT values, and at each
    collection) give the same bucket counts, count, sum, minimum and maximum as the SDK's
    histogram given the same values, boundary values included, in both temporalities."""
    rng = random.Random(12)
    values = [
        rng.choice(HTTP_BUCKETS) if rng.random() < 0.2 else rng.expovariate(8.0)
        for _ in range(FOLD_AT * 5 + 37)
    ]
    peer = _sdk_histogram(values, HTTP_BUCKETS)
    for delta in (False, True):
        histogram = Histogram_("d", "s", "", HTTP_BUCKETS)
        cell = histogram.cell(("k",), lambda: {"k": "v"})
        half = len(values) // 2
        for value in values[:half]:
            histogram.record(cell, value)
        assert cell.count > 0  # folded along the way
        assert len(cell.pending) < FOLD_AT
        first = histogram.collect(1, delta)
        for value in values[half:]:
            histogram.record(cell, value)
        second = histogram.collect(2, delta)
        assert first is not None
        assert second is not None
        (a,), (b,) = first.data.data_points, second.data.data_points
        if delta:  # two periods: together, the whole
            counts = [x + y for x, y in zip(a.bucket_counts, b.bucket_counts, strict=True)]
            count, total = a.count + b.count, a.sum + b.sum
            low, high = min(a.min, b.min), max(a.max, b.max)
            assert a.count == half
        else:
            counts, count, total, low, high = b.bucket_counts, b.count, b.sum, b.min, b.max
        assert counts == list(peer.bucket_counts)
        assert count == peer.count == len(values)
        assert total == pytest.approx(peer.sum, rel=1e-12)
        assert (low, high) == (peer.min, peer.max)


def test_values_recorded_by_threads_while_the_reader_collects_are_each_counted_once() -> None:
    """Request threads record without a lock while the reader folds and resets (delta): no
    value is lost or counted twice."""
    histogram = Histogram_("d", "s", "", HTTP_BUCKETS)
    cell = histogram.cell(("k",), lambda: {"k": "v"})
    per_thread, threads = 20_000, 4
    go = threading.Barrier(threads + 1)

    def record(n: int) -> None:
        go.wait()
        for i in range(per_thread):
            histogram.record(cell, (i % 100) / 1000 + n)

    workers = [threading.Thread(target=record, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    go.wait()
    count, total, collections = 0, 0.0, 0
    while any(worker.is_alive() for worker in workers) or cell.recorded():
        metric = histogram.collect(collections, delta=True)
        collections += 1
        if metric is not None:
            (point,) = metric.data.data_points
            assert sum(point.bucket_counts) == point.count
            count += point.count
            total += point.sum
    for worker in workers:
        worker.join()
    assert collections > 2  # collected while the threads recorded
    assert count == per_thread * threads
    expected = sum((i % 100) / 1000 + n for n in range(threads) for i in range(per_thread))
    assert total == pytest.approx(expected, rel=1e-9)
