"""Celery: a task published in a request runs in a real worker with the request's ID."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from .conftest import need_service, read_json_lines
from .peers import celery_worker, stop_process, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def worker_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    need_service("Redis", "127.0.0.1", 6379)
    env = dict(os.environ)
    env.update(
        OBSERVE_TEST_BROKER="redis://127.0.0.1:6379/9",
        OBSERVE_TEST_LOG_DIR=str(tmp_path / "worker-logs"),
        OBSERVE_TEST_QUEUE=f"flask-observe-test-{uuid.uuid4().hex[:8]}",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.mark.realtime
@pytest.mark.services
def test_worker_logs_carry_the_publishing_requests_id(
    worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publish in a request; the prefork worker's task log line has that request's ID."""
    for key in ("OBSERVE_TEST_BROKER", "OBSERVE_TEST_LOG_DIR", "OBSERVE_TEST_QUEUE"):
        monkeypatch.setenv(key, worker_env[key])
    sys.modules.pop("tests.apps.celery_worker_app", None)
    from tests.apps import celery_worker_app as module

    log_file = Path(worker_env["OBSERVE_TEST_LOG_DIR"]) / "app.log"
    target, queue = "tests.apps.celery_worker_app:celery", worker_env["OBSERVE_TEST_QUEUE"]
    try:
        with celery_worker(target, queue, env=worker_env) as worker:
            response = module.app.test_client().post(
                "/enqueue/acme", headers={"X-Request-ID": "celery-rid-1"}
            )
            assert response.status_code == 200
            task_id = response.json["task_id"]

            def task_line() -> dict[str, Any] | None:
                if worker.poll() is not None:
                    return {"message": "worker exited"}
                for line in read_json_lines(log_file):
                    if line.get("message") == "task ran":
                        return line
                return None

            line = wait_for(task_line, 60, interval=0.2)
            if line is None or line["message"] == "worker exited":
                pytest.fail(
                    f"the worker never logged the task; its output:\n{stop_process(worker)}"
                )
            assert line["correlation_id"] == "celery-rid-1"
            assert line["task_id"] == task_id
            assert line["task_name"] == "tests.log_account"
            assert line["account"] == "acme"
            assert line["service"] == "celery-test-app"
            # Celery's own worker lines went through our pipeline too (root logger not hijacked).
            assert any(x["logger"].startswith("celery") for x in read_json_lines(log_file))
    finally:
        module.observe.shutdown(module.app)


def test_publish_outside_a_request_adds_no_id_but_the_publish_time() -> None:
    """Without a bound ID, the publish hook adds no correlation header; the publish time
    (for the worker's queue-wait metric) is always added, and an existing one is kept."""
    import time

    from flask_observe.correlation.celery import PUBLISHED_AT, _on_publish

    headers: dict[str, Any] = {}
    before = time.time()
    _on_publish(headers=headers)
    assert list(headers) == [PUBLISHED_AT]
    assert before <= headers[PUBLISHED_AT] <= time.time()
    kept = {PUBLISHED_AT: 12.5}
    _on_publish(headers=kept)
    assert kept == {PUBLISHED_AT: 12.5}


def test_prerun_rejects_unsafe_header_and_postrun_unbinds() -> None:
    """A forged header value in a task message is replaced; the ID is unbound after the task."""
    from types import SimpleNamespace

    from flask_observe import get_correlation_id
    from flask_observe.correlation.celery import _on_postrun, _on_prerun

    task = SimpleNamespace(name="t", request=SimpleNamespace(observe_correlation_id="bad\nvalue"))
    _on_prerun(task_id="tid", task=task)
    bound = get_correlation_id()
    assert bound is not None
    assert bound != "bad\nvalue"
    assert "\n" not in bound
    _on_postrun(task=task)
    assert get_correlation_id() is None


def test_prerun_keeps_a_long_id_an_app_with_a_higher_max_length_accepted() -> None:
    """An app with OBSERVE_REQUEST_ID_MAX_LENGTH=512 accepts a 300-character ID; its tasks
    keep it in the worker (the receivers serve every app, so they allow the hard limit)."""
    from types import SimpleNamespace

    from flask_observe import get_correlation_id
    from flask_observe.correlation.celery import _on_postrun, _on_prerun

    long_id = "req-" + "a1" * 148
    task = SimpleNamespace(name="t", request=SimpleNamespace(observe_correlation_id=long_id))
    _on_prerun(task_id="tid", task=task)
    try:
        assert get_correlation_id() == long_id
    finally:
        _on_postrun(task=task)


def test_receivers_stay_while_an_app_uses_them_and_go_with_the_last(
    make_app: Callable[..., Flask],
) -> None:
    """Celery's signals are process-wide: two apps connect the receivers once; shutting one
    down keeps them for the other, shutting down the last disconnects them (a publish then
    gets no header, and the worker's logging setup is Celery's again)."""
    from celery import signals

    from flask_observe import Observe
    from flask_observe.context import reset_correlation_id, set_correlation_id

    def publish() -> dict[str, Any]:
        headers: dict[str, Any] = {}
        token = set_correlation_id("published-in-a-request")
        try:
            signals.before_task_publish.send(sender="task", headers=headers)
        finally:
            reset_correlation_id(token)
        headers.pop("observe_published_at", None)  # (test_publish_outside_a_request_…)
        return headers

    def keeps_logging() -> bool:
        return any(signals.setup_logging.send(sender=None))

    baseline_logging = keeps_logging()
    first = make_app("celery-one", log_stdout=False, celery_enabled=True, observe=False)
    second = make_app("celery-two", log_stdout=False, celery_enabled=True, observe=False)
    one, two = Observe(first), Observe(second)
    try:
        assert publish() == {"observe_correlation_id": "published-in-a-request"}
        assert keeps_logging()
        one.shutdown(first)
        assert publish() == {"observe_correlation_id": "published-in-a-request"}
        assert keeps_logging()
    finally:
        two.shutdown(second)
        one.shutdown(first)
    assert publish() == {}
    assert keeps_logging() == baseline_logging
