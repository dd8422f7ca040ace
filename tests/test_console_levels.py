"""Logger levels changed from the console: listed, reversible, logged, applied by every
worker of the host through the shared store, and forgotten when the server restarts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_observe import Observe
from flask_observe.console import Console
from flask_observe.console.levels import LevelControl, boot_id
from flask_observe.console.store import ConsoleDB

from .conftest import read_json_lines

TOKEN = "console-nc4wYYxi2uxLGs9du5oF_uNr"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAME_SITE = {**AUTH, "Sec-Fetch-Site": "same-origin"}
CONSOLE = "/observe/console"


@pytest.fixture
def level_app(make_app: Callable[..., Flask], tmp_path: Path) -> Callable[..., Flask]:
    def factory(**config: Any) -> Flask:
        settings: dict[str, Any] = {
            "log_stdout": False,
            "log_dir": str(tmp_path / "logs"),
            "logviewer_enabled": True,
            "auth_token": TOKEN,
        }
        settings.update(config)
        return make_app("levelapp", **settings)

    return factory


@pytest.fixture
def scraper_logger() -> Any:
    target = logging.getLogger("levelapp.scraper")
    target.setLevel(logging.INFO)
    yield target
    target.setLevel(logging.NOTSET)


def test_a_level_set_from_the_page_applies_is_listed_logged_and_reset(
    level_app: Callable[..., Flask], scraper_logger: logging.Logger, tmp_path: Path
) -> None:
    app = level_app()
    client = app.test_client()
    page = client.get(f"{CONSOLE}/loggers", headers=AUTH).get_data(as_text=True)
    assert "levelapp.scraper" in page
    answer = client.post(
        f"{CONSOLE}/loggers",
        data={"logger": "levelapp.scraper", "level": "debug"},
        headers=SAME_SITE,
    )
    assert answer.status_code == 303
    assert scraper_logger.level == logging.DEBUG
    listed = client.get(f"{CONSOLE}/loggers", headers=AUTH).get_data(as_text=True)
    changes = listed.split('id="changes"')[1].split("</table>")[0]
    assert "levelapp.scraper" in changes
    assert "DEBUG" in changes
    assert "INFO" in changes  # what it was
    answer = client.post(
        f"{CONSOLE}/loggers",
        data={"logger": "levelapp.scraper", "action": "reset"},
        headers=SAME_SITE,
    )
    assert answer.status_code == 303
    assert scraper_logger.level == logging.INFO
    lines = read_json_lines(tmp_path / "logs" / "app.log")
    audit = [line for line in lines if line.get("logger") == "flask_observe.console"]
    assert [line.get("level_set") for line in audit] == ["DEBUG", "reset"]
    assert all(line["logger_name"] == "levelapp.scraper" for line in audit)


def test_another_worker_follows_and_a_restart_forgets(
    tmp_path: Path, scraper_logger: logging.Logger
) -> None:
    """Two controls on one file stand for two workers of one server; a third with another
    boot stands for the server after a restart."""
    worker_a = LevelControl(ConsoleDB(tmp_path), boot="server-1")
    worker_b = LevelControl(ConsoleDB(tmp_path), boot="server-1")
    worker_a.set("levelapp.scraper", "ERROR", "127.0.0.1", time.time())
    scraper_logger.setLevel(logging.INFO)  # as in a second process that has not applied it
    worker_b.apply()
    assert scraper_logger.level == logging.ERROR
    restarted = LevelControl(ConsoleDB(tmp_path), boot="server-2")
    assert restarted.changes() == []
    assert [c.name for c in worker_b.changes()] == ["levelapp.scraper"]
    worker_a.reset("levelapp.scraper", None)
    worker_b.apply()
    assert scraper_logger.level == logging.INFO


def test_bad_changes_are_refused(level_app: Callable[..., Flask], scraper_logger: Any) -> None:
    app = level_app()
    client = app.test_client()
    url = f"{CONSOLE}/loggers"
    for data in (
        {"logger": "levelapp.scraper", "level": "LOUD"},
        {"logger": "no.such.logger.here", "level": "DEBUG"},
        {"logger": "<script>", "level": "DEBUG"},
    ):
        assert client.post(url, data=data, headers=SAME_SITE).status_code == 400, data
    cross = {**AUTH, "Sec-Fetch-Site": "cross-site"}
    data = {"logger": "levelapp.scraper", "level": "DEBUG"}
    assert client.post(url, data=data, headers=cross).status_code == 403
    assert client.post(url, data=data).status_code == 401
    assert scraper_logger.level == logging.INFO


def test_the_boot_is_this_process_without_a_master() -> None:
    import os

    assert boot_id().startswith(f"{os.getpid()}:")


def test_the_flusher_applies_levels_each_round(
    level_app: Callable[..., Flask], scraper_logger: logging.Logger
) -> None:
    app = level_app()
    console = Observe.handle(Console, app)
    assert console.levels is not None
    assert console.flusher is not None
    other = LevelControl(ConsoleDB(console.db.path.parent), boot=console.levels.boot)  # type: ignore[union-attr]
    other.set("levelapp.scraper", "WARNING", None, time.time())
    scraper_logger.setLevel(logging.INFO)
    console.flusher.run_once()
    assert scraper_logger.level == logging.WARNING


@pytest.mark.parametrize(
    ("argv", "master"),
    [
        ([b"/srv/venv/bin/gunicorn", b"-w", b"4", b"app:app"], True),
        ([b"gunicorn: master [app:app]"], True),
        ([b"/usr/bin/python3", b"-m", b"gunicorn", b"app:app"], True),
        ([b"python3.11", b"/srv/venv/bin/gunicorn", b"app:app"], True),
        ([b"uwsgi", b"--ini", b"app.ini"], True),
        (
            [b"timeout", b"60", b"python", b"-m", b"pytest", b"tests/test_console_gunicorn.py"],
            False,
        ),
        ([b"python", b"-m", b"pytest", b"-k", b"gunicorn"], False),
        ([b"bash", b"-c", b"gunicorn app:app"], False),
        ([b""], False),
    ],
)
def test_a_master_is_the_program_or_the_script_it_runs_not_a_mention(
    argv: list[bytes], master: bool
) -> None:
    from flask_observe.console.levels import _names_a_master

    assert _names_a_master(argv) is master
