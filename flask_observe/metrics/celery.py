"""Metrics of Celery tasks, recorded in the worker that runs them.

- ``celery_task_duration_seconds{task, outcome}`` (histogram; its ``_count`` is the number of
  tasks run): ``outcome`` is ``success``, ``failure``, ``retry``, ``ignored``, ``rejected`` or
  ``other``; exemplars carry the trace and correlation IDs;
- ``celery_task_retries_total{task}``: retries the tasks asked for (``self.retry()``,
  ``autoretry_for``);
- ``celery_task_queue_wait_seconds{task, queue}`` (histogram): from publish (the
  ``observe_published_at`` header the publishing process sets) to the start in the worker; a
  task with an ETA or countdown waits from its ETA;
- ``celery_tasks_in_progress{task}`` (gauge, summed over live worker processes);
- ``celery_queue_length{queue}`` (gauge): messages waiting in each declared queue, read from the
  broker (Redis list lengths, or RabbitMQ's message count of each queue) by the background
  ticker with a deadline, never on a request.

``task`` is the task's name, up to :data:`MAX_TASK_NAMES` distinct names per process (the rest
are ``other``); ``queue`` is a declared queue (``OBSERVE_METRICS_CELERY_QUEUES``) or ``other``.

Celery's signals are process-wide: the receivers are connected once, and record into the
metrics of every app of the process that turned them on (a worker imports one app, usually).
Under the prefork pool each child writes its own prometheus_client multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``), and a child that exits is merged into the archive as a
gunicorn worker is (:func:`~.multiprocess.mark_process_dead`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._celery import PUBLISHED_AT, header_value, incoming_id
from .._clock import SYSTEM, Clock
from .._internal import FailureLog
from .multiprocess import exact
from .settings import AMQP_SCHEMES

if TYPE_CHECKING:
    from . import Metrics

__all__ = [
    "CeleryMetrics",
    "QueueLengths",
    "connect",
    "disconnect",
    "serve_from_worker",
    "start_worker_server",
]

logger = logging.getLogger("flask_observe")

#: The ``task`` / ``queue`` label of every name past the bound or outside the declared set.
OTHER = "other"
#: Distinct task names kept as their own label value per process.
MAX_TASK_NAMES = 200
#: Task durations run from milliseconds to many minutes (scrapes, exports).
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
#: Queue waits: a healthy queue is sub-second; a backed-up one, minutes to hours.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_OUTCOMES = {
    "SUCCESS": "success",
    "FAILURE": "failure",
    "RETRY": "retry",
    "IGNORED": "ignored",
    "REJECTED": "rejected",
}
#: Exemplar label sets are capped at 128 characters (OpenMetrics).
_EXEMPLAR_BUDGET = 128
_START_ATTR = "_flask_observe_metrics"
#: kombu's Redis transport keeps priority messages in ``queue + SEP + step`` lists.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


class CeleryMetrics:
    """The Celery series of one app, and what the worker's signal receivers record into them.

    :param metrics: the app's metrics.
    :param queues: the declared queues (their own ``queue`` label value; the rest ``other``).
    :param trace_lookup: the current trace ID (exemplars), or ``None``.
    :param exemplars: attach trace/correlation IDs to the duration histogram.
    :param clock: wall time for the queue wait (the publisher's clock is a wall clock too).
    """

    def __init__(
        self,
        metrics: Metrics,
        queues: Iterable[str] = (),
        *,
        trace_lookup: Callable[[], str | None] | None = None,
        exemplars: bool = True,
        max_task_names: int = MAX_TASK_NAMES,
        clock: Clock = SYSTEM,
    ) -> None:
        self.queues = frozenset(queues)
        #: The broker reader of the queue lengths, when one is configured.
        self.lengths: QueueLengths | None = None
        self._trace_lookup = trace_lookup
        self._exemplars = exemplars
        self._max_task_names = max_task_names
        self._task_names: set[str] = set()
        self._names_lock = threading.Lock()
        self._clock = clock
        self.duration = metrics.histogram(
            "celery_task_duration_seconds",
            "Time a Celery task ran in the worker, by task name and outcome.",
            ["task", "outcome"],
            buckets=TASK_BUCKETS,
        )
        self.retries = metrics.counter(
            "celery_task_retries_total", "Retries Celery tasks asked for, by task name.", ["task"]
        )
        self.queue_wait = metrics.histogram(
            "celery_task_queue_wait_seconds",
            "Time from publishing a Celery task (or its ETA) to its start in a worker.",
            ["task", "queue"],
            buckets=WAIT_BUCKETS,
        )
        self.in_progress = metrics.gauge(
            "celery_tasks_in_progress",
            "Celery tasks running right now, by task name.",
            ["task"],
            multiprocess_mode="livesum",
        )
        self.queue_length = metrics.gauge(
            "celery_queue_length",
            "Messages waiting in a Celery queue (read from the broker).",
            ["queue"],
            multiprocess_mode="mostrecent",
        )

    # -- labels ----------------------------------------------------------------------------

    def task_label(self, name: object) -> str:
        """``name`` while fewer than ``max_task_names`` distinct names were seen, else
        ``other``."""
        if not isinstance(name, str) or not name or len(name) > 200:
            return OTHER
        if name in self._task_names:
            return name
        with self._names_lock:
            if len(self._task_names) >= self._max_task_names:
                return OTHER
            self._task_names.add(name)
        return name

    def queue_label(self, name: object) -> str:
        return name if isinstance(name, str) and name in self.queues else OTHER

    # -- what the receivers record ---------------------------------------------------------

    def started(self, task: Any, published_at: float | None, eta: float | None) -> None:
        """A task starts in this process."""
        label = self.task_label(getattr(task, "name", None))
        self.in_progress.labels(label).inc()
        since = published_at
        if eta is not None and (since is None or eta > since):
            since = eta
        if since is not None:
            wait = exact(max(0.0, self._clock.time() - since))
            request = getattr(task, "request", None)
            delivery = getattr(request, "delivery_info", None) or {}
            queue = delivery.get("routing_key") if isinstance(delivery, dict) else None
            self.queue_wait.labels(label, self.queue_label(queue)).observe(wait)

    def finished(
        self, task: Any, state: object, seconds: float, correlation_id: str | None
    ) -> None:
        """A task ends in this process after ``seconds``, in Celery state ``state``."""
        label = self.task_label(getattr(task, "name", None))
        self.in_progress.labels(label).dec()
        outcome = _OUTCOMES.get(state, "other") if isinstance(state, str) else "other"
        histogram = self.duration.labels(label, outcome)
        exemplar = self._exemplar(correlation_id) if self._exemplars else None
        seconds = exact(seconds)
        if exemplar:
            histogram.observe(seconds, exemplar)
        else:
            histogram.observe(seconds)

    def retried(self, task_name: object) -> None:
        self.retries.labels(self.task_label(task_name)).inc()

    def _exemplar(self, correlation_id: str | None) -> dict[str, str] | None:
        out: dict[str, str] = {}
        budget = _EXEMPLAR_BUDGET
        trace_id = self._trace_lookup() if self._trace_lookup is not None else None
        if trace_id is not None:
            out["trace_id"] = trace_id
            budget -= len("trace_id") + len(trace_id)
        if correlation_id is not None and len("correlation_id") + len(correlation_id) <= budget:
            out["correlation_id"] = correlation_id
        return out or None


class QueueLengths:
    """Reads the length of each declared queue from a Redis or RabbitMQ broker, with a deadline.

    Retries are off and each read uses a fresh connection with socket timeouts, as
    :class:`~flask_observe.health.RedisCheck` does: a broker that accepts and never answers
    costs one deadline, on the ticker's thread. On RabbitMQ (``amqp://``, ``amqps://``,
    ``pyamqp://``) each queue is declared passively, which reads its ready message count and
    never creates it; a queue that does not exist (yet) is 0.

    :param url: the broker's ``redis://`` or ``amqp://`` URL (never shown).
    :param queues: the queue names (kombu's priority lists are added in).
    :param timeout: seconds for connecting and for the answer.
    """

    def __init__(
        self,
        url: str,
        queues: Sequence[str],
        gauge: Any,
        *,
        timeout: float = 2.0,
    ) -> None:
        self._url = url
        self.queues = tuple(queues)
        self._gauge = gauge
        self.timeout = timeout
        self._failures = FailureLog()

    def __repr__(self) -> str:
        return f"QueueLengths(queues={self.queues!r}, timeout={self.timeout})"

    def read(self) -> dict[str, int]:
        """Each queue's length now (``LLEN`` of its list and its priority lists on Redis, the
        passive declare's message count on RabbitMQ).

        :raises redis.RedisError: the Redis broker did not answer within the deadline.
        :raises OSError: the RabbitMQ broker did not answer within the deadline.
        """
        if self._url.startswith(AMQP_SCHEMES):
            return self._read_amqp()
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            self._url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry_on_timeout=False,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            single_connection_client=True,
        )
        try:
            pipe = client.pipeline(transaction=False)
            for queue in self.queues:
                pipe.llen(queue)
                for step in _PRIORITY_STEPS:
                    pipe.llen(f"{queue}{_PRIORITY_SEP}{step}")
            answers = pipe.execute()
        finally:
            client.close()
        per = 1 + len(_PRIORITY_STEPS)
        return {
            queue: int(sum(answers[i * per : (i + 1) * per])) for i, queue in enumerate(self.queues)
        }

    def _read_amqp(self) -> dict[str, int]:
        import amqp
        from kombu.utils.url import parse_url

        parts = parse_url(self._url)
        ssl = parts["transport"] == "amqps"
        port = parts["port"] or (5671 if ssl else 5672)
        connection = amqp.Connection(
            host=f"{parts['hostname'] or 'localhost'}:{port}",
            userid=parts["userid"] or "guest",
            password=parts["password"] or "guest",
            virtual_host=parts["virtual_host"] or "/",
            ssl=ssl,
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            write_timeout=self.timeout,
        )
        lengths: dict[str, int] = {}
        try:
            connection.connect()
            channel = connection.channel()
            for queue in self.queues:
                try:
                    lengths[queue] = int(channel.queue_declare(queue, passive=True).message_count)
                except amqp.exceptions.NotFound:
                    lengths[queue] = 0  # the broker closed the channel: open another
                    channel = connection.channel()
        finally:
            connection.collect()  # drops the socket without waiting for the broker's goodbye
        return lengths

    def sample(self) -> None:
        """Read the lengths into the gauge (a ticker task); a failure is logged, rate-limited,
        and leaves the last values."""
        try:
            lengths = self.read()
        except Exception:
            self._failures("reading the Celery queue lengths")
            return
        for queue, length in lengths.items():
            self._gauge.labels(queue).set(length)


# -- the process-wide receivers ------------------------------------------------------------

_users: list[CeleryMetrics] = []
_lock = threading.Lock()
_UID = __name__ + "."


def connect(recorder: CeleryMetrics) -> None:
    """Record the process's tasks into ``recorder`` too (receivers connected once)."""
    from celery import signals

    with _lock:
        _users.append(recorder)
        if len(_users) == 1:
            signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid=_UID + "p")
            signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid=_UID + "pre")
            signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid=_UID + "post")
            signals.task_retry.connect(_on_retry, weak=False, dispatch_uid=_UID + "retry")
            signals.worker_process_shutdown.connect(
                _on_child_exit, weak=False, dispatch_uid=_UID + "exit"
            )


def disconnect(recorder: CeleryMetrics) -> None:
    """Stop recording into ``recorder``; the last one disconnects the receivers."""
    from celery import signals

    with _lock:
        if recorder in _users:
            _users.remove(recorder)
        if not _users:
            for signal, uid in (
                (signals.before_task_publish, "p"),
                (signals.task_prerun, "pre"),
                (signals.task_postrun, "post"),
                (signals.task_retry, "retry"),
                (signals.worker_process_shutdown, "exit"),
            ):
                signal.disconnect(dispatch_uid=_UID + uid)


_failures = FailureLog()


def _guarded(what: str, record: Callable[[CeleryMetrics], None]) -> None:
    for recorder in tuple(_users):
        try:
            record(recorder)
        except Exception:
            _failures(f"recording Celery task metrics ({what})")


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # The correlation receiver sets it too; either is enough (metrics may be on alone).
    if headers is not None and PUBLISHED_AT not in headers:
        headers[PUBLISHED_AT] = time.time()


def _epoch(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return _iso(value)
    else:
        return None
    return number if number == number and 0 < number < 1e11 else None


def _iso(value: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _on_prerun(task: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    if request is None:
        return
    try:
        setattr(request, _START_ATTR, time.perf_counter())
        published_at = _epoch(header_value(request, PUBLISHED_AT))
        eta = _epoch(getattr(request, "eta", None))
    except Exception:
        return
    _guarded("start", lambda r: r.started(task, published_at, eta))


def _on_postrun(task: Any = None, state: object = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    started = getattr(request, _START_ATTR, None) if request is not None else None
    if not isinstance(started, float):
        return
    setattr(request, _START_ATTR, None)
    seconds = time.perf_counter() - started
    correlation_id = incoming_id(task)
    if correlation_id is None:
        from ..context import get_correlation_id

        correlation_id = get_correlation_id()
    _guarded("finish", lambda r: r.finished(task, state, seconds, correlation_id))


def _on_retry(request: Any = None, sender: Any = None, **_: Any) -> None:
    name = getattr(sender, "name", None) or getattr(request, "task", None)
    _guarded("retry", lambda r: r.retried(name))


def _on_child_exit(**_: Any) -> None:
    """A prefork child exits: merge its multiprocess files into the archive now (the parent
    has no hook for it), so its counts stay and its live gauges go."""
    from .multiprocess import mark_process_dead, multiprocess_dir

    if multiprocess_dir() is None:
        return
    try:
        mark_process_dead(os.getpid())
    except Exception:
        logger.exception("flask_observe: merging a Celery child's metrics files failed")


# -- exposing them from a worker -------------------------------------------------------------


def start_worker_server(metrics: Metrics, port: int, address: str = "127.0.0.1") -> Any:
    """Serve ``metrics`` (every process's, under ``PROMETHEUS_MULTIPROC_DIR``) over HTTP on
    ``address:port`` from a daemon thread of the calling process (the worker's main process):
    Prometheus scrapes the worker as it scrapes the web app.

    :returns: the server (``shutdown()`` stops it).
    """
    from prometheus_client import start_http_server

    from .multiprocess import collect_registry

    source: Any = metrics.registry
    if metrics.multiprocess_dir is not None:
        source = collect_registry(metrics.multiprocess_dir)
    server, _thread = start_http_server(port, address, registry=source)
    return server


def serve_from_worker(
    metrics: Metrics,
    port: int,
    address: str = "127.0.0.1",
    *,
    on_ready: Callable[[], object] | None = None,
) -> Callable[[], None]:
    """When this process becomes a Celery worker (``worker_ready``, in its main process),
    serve ``metrics`` on ``address:port`` and call ``on_ready`` (start the app's ticker: the
    worker serves no requests that would).

    :returns: a closer: disconnects the receiver and stops the server.
    """
    from celery import signals

    servers: list[Any] = []
    uid = f"{_UID}ready.{id(metrics)}"

    def ready(sender: Any = None, **_: Any) -> None:
        try:
            pool = getattr(sender, "pool", None)
            if metrics.multiprocess_dir is None and "prefork" in type(pool).__module__:
                logger.warning(
                    "flask_observe: the Celery worker serves its metrics on port %d without"
                    " PROMETHEUS_MULTIPROC_DIR: its prefork children run the tasks and their"
                    " counts are not seen. Start the worker with PROMETHEUS_MULTIPROC_DIR set"
                    " to an empty directory of its own (docs/metrics.md, 'Celery tasks')",
                    port,
                )
            servers.append(start_worker_server(metrics, port, address))
            logger.info(
                "flask_observe: Celery worker metrics on http://%s:%d/metrics", address, port
            )
            if on_ready is not None:
                on_ready()
        except Exception:
            _failures("starting the Celery worker's metrics server")

    signals.worker_ready.connect(ready, weak=False, dispatch_uid=uid)

    def close() -> None:
        signals.worker_ready.disconnect(dispatch_uid=uid)
        for server in servers:
            server.shutdown()
            server.server_close()
        servers.clear()

    return close
