"""The Observe extension: per-app state, init once, independence, shutdown."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask import Flask

from flask_observe import Observe, get_correlation_id
from flask_observe.correlation import CorrelationMiddleware


def test_state_lives_in_app_extensions_not_on_the_extension(
    make_app: Callable[..., Flask],
) -> None:
    """init_app stores state in app.extensions['observe'] and keeps no app on the object."""
    ext = Observe()
    app = Flask("a")
    ext.init_app(app)
    try:
        assert Observe.state(app).service_name == "a"
        assert not any(isinstance(v, Flask) for v in vars(ext).values())
        assert isinstance(app.wsgi_app, CorrelationMiddleware)
    finally:
        ext.shutdown(app)


def test_second_init_app_raises() -> None:
    """A second init_app on the same app is refused with a sentence saying what to do."""
    app = Flask("twice")
    ext = Observe(app, log_stdout=False)
    try:
        with pytest.raises(RuntimeError, match="already been registered"):
            Observe(app)
        with pytest.raises(RuntimeError, match="Import and use that instance"):
            ext.init_app(app)
    finally:
        ext.shutdown(app)


def test_two_apps_in_one_process_are_independent(make_app: Callable[..., Flask]) -> None:
    """Two apps keep their own header name, service name and switches."""
    one = make_app("one", request_id_header="X-Trace-Token", log_stdout=False)
    two = make_app("two", correlation_enabled=False, log_stdout=False)

    @one.get("/")
    def one_view() -> dict[str, str | None]:
        return {"id": get_correlation_id()}

    @two.get("/")
    def two_view() -> dict[str, str | None]:
        return {"id": get_correlation_id()}

    r1 = one.test_client().get("/", headers={"X-Trace-Token": "token-1"})
    r2 = two.test_client().get("/", headers={"X-Request-ID": "token-2"})
    assert r1.headers["X-Trace-Token"] == "token-1"
    assert r1.json == {"id": "token-1"}
    assert "X-Request-ID" not in r2.headers
    assert r2.json == {"id": None}
    assert Observe.state(one).service_name == "one"
    assert Observe.state(two).service_name == "two"


def test_disabled_turns_everything_off(make_app: Callable[..., Flask]) -> None:
    """OBSERVE_ENABLED=False installs no middleware and no handler."""
    before = list(logging.getLogger().handlers)
    app = make_app("off", enabled=False)
    assert not isinstance(app.wsgi_app, CorrelationMiddleware)
    assert logging.getLogger().handlers == before


def test_shutdown_undoes_init_app() -> None:
    """shutdown() unwraps the WSGI app, removes handlers and forgets the state."""
    before = list(logging.getLogger().handlers)
    app = Flask("undo")
    original = app.wsgi_app
    ext = Observe(app)
    assert logging.getLogger().handlers != before
    ext.shutdown(app)
    assert app.wsgi_app == original
    assert logging.getLogger().handlers == before
    assert "observe" not in app.extensions
    with pytest.raises(RuntimeError, match="not initialised"):
        Observe.state(app)


def test_failed_setup_leaves_nothing_behind(tmp_path: object) -> None:
    """If a feature fails to start, init_app removes what it had already installed."""
    before = list(logging.getLogger().handlers)
    app = Flask("broken")
    blocker = tmp_path / "not-a-dir"  # type: ignore[operator]
    blocker.write_text("x")
    app.config["OBSERVE_LOG_DIR"] = str(blocker)
    with pytest.raises(FileExistsError):
        Observe(app)
    assert logging.getLogger().handlers == before
    assert "observe" not in app.extensions
