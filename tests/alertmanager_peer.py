"""A real Alertmanager on loopback and a receiver for what it sends.

- :func:`need_alertmanager`: the Debian ``prometheus-alertmanager`` binaries, or skip (fail
  when ``OBSERVE_REQUIRE_SERVICES`` is set).
- receivers: :class:`tests.alert_sinks.Sink` records what Alertmanager's webhook, Slack and
  PagerDuty notifiers POST (JSON, per path); :func:`notifications` reads it per receiver.
- :func:`webhook_variant`: the shipped ``alertmanager.yml`` with each receiver replaced by a
  webhook to ``<receiver url>/<receiver name>``, routes and inhibitions untouched;
  :func:`with_timings` shortens its group/repeat intervals for a test.
- :func:`running_alertmanager`: ``prometheus-alertmanager`` in a subprocess on a free port, its
  own storage directory, clustering off; :class:`Alertmanager` posts alerts to its API v2.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flask_observe import contrib

from .alert_sinks import Sink
from .conftest import REQUIRE_SERVICES
from .peers import free_port

#: The example configuration shipped in the package.
SHIPPED_CONFIG = contrib.path("alertmanager/alertmanager.yml")


def need_alertmanager() -> tuple[str, str]:
    """``(alertmanager, amtool)`` paths; skip, or fail in CI, when they are not installed."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    amtool = shutil.which("amtool")
    if binary is None or amtool is None:
        message = "Alertmanager is not installed (apt-get install -y prometheus-alertmanager)"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return binary, amtool


def webhook_variant(
    receiver_url: str,
    config: Path | dict[str, Any] = SHIPPED_CONFIG,
    *,
    timings: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``config`` with every receiver a webhook to ``<receiver_url>/<receiver name>``.

    :param timings: replaces ``group_wait``/``group_interval``/``repeat_interval`` on the root
        route and removes them from the child routes (a test cannot wait 30 s), e.g.
        ``{"group_wait": "1s", "group_interval": "2s", "repeat_interval": "1h"}``.
    """
    if isinstance(config, Path):
        loaded: dict[str, Any] = yaml.safe_load(config.read_text("utf-8"))
    else:
        loaded = copy.deepcopy(config)
    loaded["global"] = {"resolve_timeout": loaded.get("global", {}).get("resolve_timeout", "5m")}
    loaded["receivers"] = [
        {
            "name": receiver["name"],
            "webhook_configs": [
                {"url": f"{receiver_url}/{receiver['name']}", "send_resolved": True}
            ],
        }
        for receiver in loaded["receivers"]
    ]
    loaded.pop("templates", None)
    return with_timings(loaded, timings) if timings else loaded


def with_timings(config: dict[str, Any], timings: dict[str, str]) -> dict[str, Any]:
    """``config`` (changed in place and returned) with ``timings`` on the root route and the
    same keys removed from every child route, so that every route uses them."""

    def strip(route: dict[str, Any]) -> None:
        for child in route.get("routes", []):
            for key in timings:
                child.pop(key, None)
            strip(child)

    config["route"].update(timings)
    strip(config["route"])
    return config


def notifications(sink: Sink, receiver: str) -> list[dict[str, Any]]:
    """The bodies ``sink`` got for ``receiver`` (the path :func:`webhook_variant` gave it)."""
    return [body for _, path, body in list(sink.received) if path == receiver]


def rfc3339(moment: dt.datetime) -> str:
    """A time as Alertmanager's API takes it (UTC, ``Z``)."""
    return (
        moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class Alertmanager:
    """A running Alertmanager: ``url`` and its API v2."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def post_alerts(self, alerts: list[dict[str, Any]]) -> int:
        """``POST /api/v2/alerts`` (a JSON array); the HTTP status (raises on 4xx/5xx)."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: the alerts it holds now."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as response:
            result: list[dict[str, Any]] = json.load(response)
            return result

    def output(self) -> str:
        """What the process logged so far (for assertion messages)."""
        return self.log.read_text("utf-8", "replace")[-4000:]


@contextlib.contextmanager
def running_alertmanager(
    config: dict[str, Any] | Path, workdir: Path, *, startup_timeout: float = 30.0
) -> Iterator[Alertmanager]:
    """``prometheus-alertmanager`` with ``config`` (a dict is written to ``workdir``) on a free
    loopback port, storage in ``workdir/data``, cluster listening off; stopped on exit."""
    binary, _ = need_alertmanager()
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(config, dict):
        path = workdir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    else:
        path = config
    log = workdir / "alertmanager.log"
    for _attempt in range(3):  # the free port can be taken between asking and binding
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={path}",
                    f"--storage.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    f"--web.external-url={url}",
                    "--cluster.listen-address=",
                    "--log.level=debug",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if _wait_ready(url, process, startup_timeout):
            break
        _stop(process)
        if "address already in use" not in log.read_text("utf-8", "replace"):
            raise AssertionError(f"Alertmanager did not start:\n{log.read_text()[-4000:]}")
    else:
        raise AssertionError(f"Alertmanager found no free port:\n{log.read_text()[-4000:]}")
    try:
        yield Alertmanager(url, process, log)
    finally:
        _stop(process)


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
