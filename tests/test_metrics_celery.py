"""Celery task metrics: recorded in a real prefork worker over a real Redis broker, served by
the worker's own metrics server; queue lengths read from the broker with a deadline; every
label bounded whatever task and queue names arrive."""

from __future__ import annotations

import importlib
import os
import random
import string
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from flask_observe import ConfigError, Observe
from flask_observe._clock import ManualClock
from flask_observe.metrics import Metrics
from flask_observe.metrics.celery import OTHER, CeleryMetrics, QueueLengths

from .conftest import HungServer, need_service
from .peers import celery_worker, free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parent.parent
BROKER = "redis://127.0.0.1:6379/9"


def fresh_app_module() -> Any:
    """The test app module imported anew (it reads the queue's name from the environment);
    ``from tests.apps import …`` would hand back the package attribute of an earlier test."""
    import tests.apps

    sys.modules.pop("tests.apps.celery_metrics_app", None)
    if hasattr(tests.apps, "celery_metrics_app"):
        delattr(tests.apps, "celery_metrics_app")
    return importlib.import_module("tests.apps.celery_metrics_app")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def sample(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def worker_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    need_service("Redis", "127.0.0.1", 6379)
    queue = f"flask-observe-metrics-{uuid.uuid4().hex[:8]}"
    multiproc = tmp_path / "worker-metrics"
    multiproc.mkdir()
    env = dict(os.environ)
    env.update(
        OBSERVE_TEST_BROKER=BROKER,
        OBSERVE_TEST_QUEUE=queue,
        OBSERVE_TEST_METRICS_PORT=str(free_port()),
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        PYTHONPATH=str(ROOT),
    )
    # The publishing side (this process) shares the broker and the queue, not the directory.
    monkeypatch.setenv("OBSERVE_TEST_BROKER", BROKER)
    monkeypatch.setenv("OBSERVE_TEST_QUEUE", queue)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    yield env
    import redis

    redis.Redis.from_url(BROKER).delete(queue)


@pytest.mark.realtime
@pytest.mark.services
def test_a_prefork_worker_records_duration_outcome_retries_and_queue_wait(
    worker_env: dict[str, str],
) -> None:
    """Tasks published before the worker starts wait in Redis (the queue length says how
    many); the prefork child that runs them records their duration by outcome, the retries and
    the time they waited; the worker's metrics server shows the child's counts (multiprocess
    files), and nothing is left in progress."""
    module = fresh_app_module()
    queue = worker_env["OBSERVE_TEST_QUEUE"]
    try:
        client = module.app.test_client()
        for _ in range(2):
            assert (
                client.post("/enqueue", headers={"X-Request-ID": "rid-celery-m"}).status_code == 200
            )
        module.scrape.delay(0.3)
        module.broken.delay()
        module.flaky.delay(1)
        lengths = Observe.handle(CeleryMetrics, module.app).lengths
        assert lengths is not None
        assert lengths.read() == {queue: 5}
        time.sleep(0.5)  # every task waits at least this long in the queue
        url = f"http://127.0.0.1:{worker_env['OBSERVE_TEST_METRICS_PORT']}/metrics"
        with celery_worker("tests.apps.celery_metrics_app:celery", queue, env=worker_env) as worker:

            def done() -> dict[Any, float] | None:
                if worker.poll() is not None:
                    return {("exited", frozenset()): 1.0}
                try:
                    found = samples(requests.get(url, timeout=2).text)
                except requests.RequestException:
                    return None
                finished = sum(
                    v
                    for (name, _), v in found.items()
                    if name == "celery_task_duration_seconds_count"
                )
                return found if finished >= 6 else None  # 5 tasks, one of them run twice

            found = wait_for(done, 60, interval=0.3)
            if not found or ("exited", frozenset()) in found:
                pytest.fail(f"the worker's metrics never showed the tasks:\n{stop_process(worker)}")
            count = "celery_task_duration_seconds_count"
            assert sample(found, count, task="tests.scrape", outcome="success") == 3
            assert sample(found, count, task="tests.broken", outcome="failure") == 1
            assert sample(found, count, task="tests.flaky", outcome="retry") == 1
            assert sample(found, count, task="tests.flaky", outcome="success") == 1
            assert sample(found, "celery_task_retries_total", task="tests.flaky") == 1
            # The 0.3 s task is in the 0.5 s bucket and not the 0.25 s one.
            bucket = "celery_task_duration_seconds_bucket"
            slow = sample(found, bucket, task="tests.scrape", outcome="success", le="0.25")
            assert slow == 2
            assert sample(found, bucket, task="tests.scrape", outcome="success", le="0.5") == 3
            waits = "celery_task_queue_wait_seconds"
            assert sample(found, waits + "_count", task="tests.scrape", queue=queue) == 3
            assert sample(found, waits + "_bucket", task="tests.scrape", queue=queue, le="0.1") == 0
            assert sample(found, waits + "_sum", task="tests.scrape", queue=queue) >= 3 * 0.5
            assert sample(found, "celery_tasks_in_progress", task="tests.scrape") == 0
            # The worker's ticker reads the (now drained) queue from the broker.
            drained = wait_for(
                lambda: (
                    ("celery_queue_length", frozenset({("queue", queue)}))
                    in (got := samples(requests.get(url, timeout=2).text))
                    and sample(got, "celery_queue_length", queue=queue) == 0
                ),
                20,
                interval=0.3,
            )
            assert drained
            files = os.listdir(worker_env["PROMETHEUS_MULTIPROC_DIR"])
            assert any(name.startswith("histogram_") for name in files)
    finally:
        module.observe.shutdown(module.app)


@pytest.mark.realtime
@pytest.mark.services
def test_a_running_task_is_in_progress_in_the_workers_metrics(
    worker_env: dict[str, str],
) -> None:
    """While a long task runs in the prefork child, the in-progress gauge is 1 for it."""
    module = fresh_app_module()
    queue = worker_env["OBSERVE_TEST_QUEUE"]
    url = f"http://127.0.0.1:{worker_env['OBSERVE_TEST_METRICS_PORT']}/metrics"
    try:
        with celery_worker("tests.apps.celery_metrics_app:celery", queue, env=worker_env) as worker:
            module.scrape.delay(4.0)

            def running() -> bool:
                try:
                    found = samples(requests.get(url, timeout=2).text)
                except requests.RequestException:
                    return False
                return sample(found, "celery_tasks_in_progress", task="tests.scrape") == 1

            if not wait_for(running, 30, interval=0.2):
                pytest.fail(f"never in progress:\n{stop_process(worker)}")
    finally:
        module.observe.shutdown(module.app)


def _task(name: str, queue: str = "q", **request: Any) -> Any:
    return SimpleNamespace(
        name=name, request=SimpleNamespace(delivery_info={"routing_key": queue}, **request)
    )


def test_task_and_queue_labels_stay_bounded_whatever_names_arrive() -> None:
    """10,000 random task and queue names: at most ``max_task_names`` task values plus
    ``other``; queues outside the declared ones are ``other``; outcomes stay in their set."""
    metrics = Metrics(process_metrics=False)
    recorder = CeleryMetrics(metrics, ["scrape"], max_task_names=50, clock=ManualClock())
    rng = random.Random(14)
    for _ in range(10_000):
        name = "".join(rng.choices(string.printable, k=rng.randint(0, 300)))
        task = _task(name, queue=rng.choice(["scrape", name]))
        recorder.started(task, published_at=ManualClock().time() - 1, eta=None)
        recorder.finished(task, rng.choice(["SUCCESS", "FAILURE", name]), 0.1, None)
        recorder.retried(name)
    labels: dict[str, set[tuple[str, ...]]] = {}
    for family in metrics.registry.collect():
        if family.name.startswith("celery_"):
            for s in family.samples:
                keys = tuple(v for k, v in sorted(s.labels.items()) if k != "le")
                labels.setdefault(family.name, set()).add(keys)
    tasks = {s[-1] for s in labels["celery_task_duration_seconds"]}
    assert len(tasks) <= 51
    assert OTHER in tasks
    outcomes = {s[0] for s in labels["celery_task_duration_seconds"]}
    assert outcomes <= {"success", "failure", "retry", "ignored", "rejected", "other"}
    queues = {s[0] for s in labels["celery_task_queue_wait_seconds"]}
    assert queues == {"scrape", OTHER}
    assert len(labels["celery_task_retries"]) <= 51


def test_queue_wait_counts_from_publish_or_eta_on_the_clock() -> None:
    """Wait = now - publish time; a task with a later ETA waits from its ETA; a publisher's
    clock ahead of ours counts 0, not a negative wait."""
    clock = ManualClock()
    metrics = Metrics(process_metrics=False)
    recorder = CeleryMetrics(metrics, ["q"], clock=clock)
    now = clock.time()
    recorder.started(_task("t"), published_at=now - 7.5, eta=None)
    recorder.started(_task("t"), published_at=now - 100, eta=now - 2)
    recorder.started(_task("t"), published_at=now + 30, eta=None)
    value = metrics.registry.get_sample_value
    assert value("celery_task_queue_wait_seconds_sum", {"task": "t", "queue": "q"}) == 9.5
    assert value("celery_task_queue_wait_seconds_count", {"task": "t", "queue": "q"}) == 3
    assert (
        value("celery_task_queue_wait_seconds_bucket", {"task": "t", "queue": "q", "le": "0.01"})
        == 1
    )
    assert value("celery_tasks_in_progress", {"task": "t"}) == 3


def test_durations_carry_trace_and_correlation_exemplars() -> None:
    """The duration histogram's exemplar holds the trace and correlation IDs; an ID too long
    for the 128-character exemplar budget is left out rather than breaking the exposition."""
    from prometheus_client.openmetrics.exposition import generate_latest

    metrics = Metrics(process_metrics=False)
    trace = "ab" * 16
    recorder = CeleryMetrics(metrics, trace_lookup=lambda: trace)
    recorder.finished(_task("t"), "SUCCESS", 0.02, "rid-42")
    recorder.finished(_task("u"), "SUCCESS", 0.02, "x" * 120)
    text = generate_latest(metrics.registry).decode()
    line = next(x for x in text.splitlines() if 'task="t"' in x and "#" in x)
    assert f'trace_id="{trace}"' in line
    assert 'correlation_id="rid-42"' in line
    line = next(x for x in text.splitlines() if 'task="u"' in x and "#" in x)
    assert f'trace_id="{trace}"' in line
    assert "correlation_id" not in line


@pytest.mark.realtime
@pytest.mark.parametrize("scheme", ["redis://{}/0", "amqp://guest:guest@{}//"])
def test_a_hung_broker_costs_one_deadline_and_keeps_the_last_lengths(
    caplog: pytest.LogCaptureFixture, scheme: str
) -> None:
    """Queue lengths from a broker (Redis or RabbitMQ) that accepts and never answers: the read
    gives up at its deadline, says so once in the log, and the gauge keeps its last value."""
    metrics = Metrics(process_metrics=False)
    recorder = CeleryMetrics(metrics, ["q"])
    recorder.queue_length.labels("q").set(4)
    with HungServer() as hung:
        lengths = QueueLengths(
            scheme.format(f"127.0.0.1:{hung.port}"), ["q"], recorder.queue_length, timeout=0.3
        )
        started = time.monotonic()
        lengths.sample()
        lengths.sample()
        took = time.monotonic() - started
    assert took < 2 * 0.3 + 0.6
    assert metrics.registry.get_sample_value("celery_queue_length", {"queue": "q"}) == 4
    assert sum("Celery queue lengths" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.services
def test_queue_lengths_count_priority_lists_of_the_redis_transport() -> None:
    """kombu keeps prioritised messages in ``queue\\x06\\x16N`` lists: they are waiting too."""
    need_service("Redis", "127.0.0.1", 6379)
    import redis

    queue = f"fo-len-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(BROKER)
    try:
        client.rpush(queue, "a", "b")
        client.rpush(f"{queue}\x06\x166", "c")
        metrics = Metrics(process_metrics=False)
        recorder = CeleryMetrics(metrics, [queue])
        QueueLengths(BROKER, [queue, "fo-empty"], recorder.queue_length).sample()
        value = metrics.registry.get_sample_value
        assert value("celery_queue_length", {"queue": queue}) == 3
        assert value("celery_queue_length", {"queue": "fo-empty"}) == 0
    finally:
        client.delete(queue, f"{queue}\x06\x166")


def test_a_broker_url_without_queues_is_refused(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigError, match="OBSERVE_METRICS_CELERY_QUEUES"):
        make_app(metrics_celery_broker_url=BROKER)
    with pytest.raises(ConfigError, match="OBSERVE_METRICS_CELERY_BROKER_URL"):
        make_app(metrics_celery_broker_url="http://broker", metrics_celery_queues=["q"])


AMQP_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.mark.services
def test_queue_lengths_from_a_real_rabbitmq_broker(make_app: Callable[..., Flask]) -> None:
    """Three messages published to a RabbitMQ queue through kombu (as Celery publishes): the
    gauge reads 3; a declared queue that does not exist reads 0 and is not created; the setting
    takes an ``amqp://`` URL."""
    need_service("RabbitMQ", "127.0.0.1", 5672)
    from kombu import Connection, Exchange, Producer, Queue

    name = f"fo-amqp-{uuid.uuid4().hex[:8]}"
    missing = f"fo-amqp-missing-{uuid.uuid4().hex[:8]}"
    with Connection(AMQP_BROKER, connect_timeout=5) as conn:
        queue = Queue(name, Exchange(name, type="direct"), routing_key=name, auto_delete=False)
        channel = conn.channel()
        queue(channel).declare()
        try:
            producer = Producer(channel, exchange=queue.exchange, routing_key=name)
            for n in range(3):
                producer.publish({"n": n}, serializer="json")
            metrics = Metrics(process_metrics=False)
            recorder = CeleryMetrics(metrics, [name, missing])
            lengths = QueueLengths(AMQP_BROKER, [name, missing], recorder.queue_length)
            value = metrics.registry.get_sample_value
            deadline = time.monotonic() + 5
            while True:  # publishing is asynchronous: the broker counts when it has routed
                lengths.sample()
                if value("celery_queue_length", {"queue": name}) == 3 or (
                    time.monotonic() > deadline
                ):
                    break
                time.sleep(0.05)
            assert value("celery_queue_length", {"queue": name}) == 3
            assert value("celery_queue_length", {"queue": missing}) == 0
            with pytest.raises(Exception, match="NOT_FOUND"):
                conn.channel().queue_declare(missing, passive=True)
        finally:
            queue(conn.channel()).delete()
    app = make_app(metrics_celery_broker_url=AMQP_BROKER, metrics_celery_queues=[name])
    wired = Observe.handle(CeleryMetrics, app).lengths
    assert isinstance(wired, QueueLengths)
    assert wired.queues == (name,)
    assert "guest" not in repr(wired)
