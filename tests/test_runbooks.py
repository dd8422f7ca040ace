"""docs/runbooks: one page per shipped alert, linked from the alert, and every command on them
works: the PromQL against a real Prometheus, the log searches against the sample app's viewer
(page links, API and CLI)."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests
import yaml
from flask import Flask

from flask_observe import ObserveConfig
from flask_observe.alerting import rules as in_process
from flask_observe.config import config_keys
from sample_app import create_app, observe

from .peers import free_port
from .test_contrib import RULES, need_tool
from .test_prometheus_integration import Process, wait_until

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "docs" / "runbooks"
INDEX = RUNBOOKS / "index.md"
#: The base of every runbook_url in the shipped rule file (docs/runbooks/index.md says how to
#: change it).
BASE = "https://github.com/flask-observe/flask-observe/blob/main/docs/runbooks"
APP = "https://scraper.example.com"
TOKEN = "runbook-token-0123456789abcdef"


def shipped_alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def pages() -> dict[str, str]:
    """Each runbook page's text by its name (the alert it is for)."""
    return {p.stem: p.read_text() for p in sorted(RUNBOOKS.glob("*.md")) if p.name != "index.md"}


def test_every_alert_links_its_runbook_and_every_runbook_belongs_to_an_alert() -> None:
    """Each alert rule of the shipped file (both rules of a two-window burn-rate alert too)
    has ``runbook_url`` = base + ``/<alert>.md``, and that page exists; each page under
    docs/runbooks/ (but the index) is named after an alert of the file, and the index links
    it."""
    alerts = shipped_alerts()
    assert len(alerts) >= 17
    for rule in alerts:
        assert rule["annotations"]["runbook_url"] == f"{BASE}/{rule['alert']}.md", rule["alert"]
        assert (RUNBOOKS / f"{rule['alert']}.md").is_file(), rule["alert"]
    names = {rule["alert"] for rule in alerts}
    assert set(pages()) == names
    index = INDEX.read_text()
    for name in names:
        assert f"]({name}.md)" in index, name


def test_every_in_process_rule_is_on_the_page_of_its_condition() -> None:
    """Each built-in in-process rule (the default ``name`` of each rule class of
    flask_observe.alerting.rules) has a row in the index naming the page for it, and that page
    describes it (the in-process alerts carry no URL: the index is how their name is found)."""
    names = set()
    for attribute in in_process.__all__:
        cls = getattr(in_process, attribute)
        if not dataclasses.is_dataclass(cls):
            continue
        for field in dataclasses.fields(cls):
            if field.name == "name" and isinstance(field.default, str):
                names.add(field.default)
    assert len(names) >= 6  # HighErrorRate, HighLatency, HighMemory, LowDiskSpace, …
    rows = re.findall(
        r"^\| `(\w+)` \| \w+ \| (.*?) \| \[\w+\.md\]\((\w+)\.md\) \|$", INDEX.read_text(), re.M
    )
    assert {alert for alert, _, _ in rows} == set(pages())
    for name in names:
        (page,) = [page for alert, twin, page in rows if f"`{name}`" in twin]
        assert f"`{name}`" in pages()[page], (name, page)


@pytest.mark.parametrize("name", sorted(pages()))
def test_each_runbook_says_what_it_means_how_to_confirm_and_what_to_do(name: str) -> None:
    """The same sections on every page, each with something in it: a Prometheus query, a log
    viewer link and CLI command, a Jaeger search; settings named on it exist."""
    text = pages()[name]
    assert text.startswith(f"# {name}\n")
    for heading in (
        "## What it means",
        "## Confirm it",
        "### Prometheus",
        "### Log viewer",
        "### Jaeger",
        "## What to do",
    ):
        assert f"\n{heading}\n" in text, heading
    assert promql_blocks(text), "no Prometheus query"
    assert "flask --app sample_app observe " in text, "no CLI command"
    assert "http://jaeger:16686/search?" in text, "no Jaeger search"
    unknown = set(re.findall(r"\bOBSERVE_[A-Z_]+[A-Z]\b", text)) - set(config_keys(ObserveConfig))
    assert not unknown, unknown


def promql_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"^```promql\n(.*?)^```", text, re.M | re.S)]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus server with nothing to scrape: it parses and evaluates queries."""
    binary = need_tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 15s}\n")
    server = Process(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return requests.get(url + "/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(ready, 30, "prometheus to be ready")
        yield url
    finally:
        server.stop()


@pytest.mark.services
def test_every_runbook_query_is_valid_promql_for_prometheus(prometheus: str) -> None:
    """Each ```promql block of every page, as written, is accepted by Prometheus' query API
    (a syntax or type error answers ``error``), and selects the alert's job."""
    queries = [(name, q) for name, text in pages().items() for q in promql_blocks(text)]
    assert len(queries) >= 30
    for name, query in queries:
        response = requests.post(prometheus + "/api/v1/query", data={"query": query}, timeout=10)
        body = response.json()
        assert body["status"] == "success", (name, query, body)
        assert 'job="scraper"' in query, (name, query)


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[Flask]:
    """The sample app with its log viewer on (a token) and a few requests in its logs: a list,
    an unknown account (404) and the deliberate failure (500)."""
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 's.db'}",
            "SCRAPER_PLATFORM_URL": "http://127.0.0.1:9",
            "OBSERVE_LOG_STDOUT": False,
            "OBSERVE_LOG_DIR": str(tmp_path / "logs"),
            "OBSERVE_AUTH_TOKEN": TOKEN,
        }
    )
    try:
        client = app.test_client()
        auth = {"Authorization": f"Bearer {TOKEN}"}  # /api/debug/fail is the operator's
        for path in ("/api/accounts", "/api/accounts/999", "/api/debug/fail"):
            client.get(path, headers=auth).close()  # the line is written when it closes
        yield app
    finally:
        observe.shutdown(app)


def test_every_runbook_log_search_is_accepted_by_the_viewer(sample: Flask) -> None:
    """Every log viewer link (its fragment is the API's query), every API URL and every
    ``flask --app sample_app observe logs …`` command on the pages answers 200 / exits 0 on
    the sample app; the 5xx search of the error-rate page finds the request that failed.
    Every Jaeger link searches the service with tags that are JSON strings."""
    client = sample.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    runner = sample.test_cli_runner()
    seen = {"page": 0, "api": 0, "cli": 0, "jaeger": 0}
    for name, text in pages().items():
        for fragment in re.findall(re.escape(APP) + r"/observe/logs#([^)\s]+)", text):
            response = client.get(
                "/api/logs/search", query_string=parse_qsl(fragment), headers=auth
            )
            assert response.status_code == 200, (name, fragment, response.json)
            seen["page"] += 1
        for path in re.findall(re.escape(APP) + r"(/api/logs/[^\s'\"`)>]+)", text):
            response = client.get(path, headers=auth)
            assert response.status_code == 200, (name, path, response.json)
            seen["api"] += 1
        for line in re.findall(r"^flask --app sample_app (observe logs .*)$", text, re.M):
            result = runner.invoke(args=shlex.split(line))
            assert result.exit_code == 0, (name, line, result.output)
            seen["cli"] += 1
        for url in re.findall(r"http://jaeger:16686/search\?[^>\s)]+", text):
            query = parse_qs(urlsplit(url).query)
            assert query["service"] == ["scraper"], url
            if "tags" in query:
                tags = json.loads(query["tags"][0])
                assert tags
                assert all(isinstance(v, str) for v in tags.values()), url
            if "minDuration" in query:
                assert re.fullmatch(r"\d+(ms|s)", query["minDuration"][0]), url
            seen["jaeger"] += 1
    assert min(seen.values()) >= 10, seen
    # The first search of the error-rate page is the 5xx access lines: it finds the failure.
    fragment = re.findall(
        re.escape(APP) + r"/observe/logs#([^)\s]+)", pages()["FlaskObserveHighErrorRate"]
    )[0]
    found = client.get("/api/logs/search", query_string=parse_qsl(fragment), headers=auth).json
    assert found is not None
    assert [r["record"]["route"] for r in found["results"]] == ["/api/debug/fail"]


@pytest.mark.realtime
def test_the_documented_base_url_change_rewrites_every_runbook_url(tmp_path: Path) -> None:
    """The index's ``sed`` command, run on a copy of the rule file, moves every runbook_url to
    the new base and changes nothing else."""
    (block,) = [
        b for b in re.findall(r"^```sh\n(.*?)^```", INDEX.read_text(), re.M | re.S) if "sed -i" in b
    ]
    copy = tmp_path / "flask_observe_rules.yml"
    copy.write_text(RULES.read_text())
    script = block.replace("/etc/prometheus/rules/flask_observe_rules.yml", str(copy))
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    before = yaml.safe_load(RULES.read_text())
    after = yaml.safe_load(copy.read_text())
    moved = 0
    for old_group, new_group in zip(before["groups"], after["groups"], strict=True):
        for old, new in zip(old_group["rules"], new_group["rules"], strict=True):
            if "alert" in old:
                url = old["annotations"]["runbook_url"]
                expected = url.replace(BASE, "https://wiki.example.com/runbooks")
                assert new["annotations"]["runbook_url"] == expected
                old["annotations"].pop("runbook_url")
                new["annotations"].pop("runbook_url")
                moved += 1
            assert old == new
    assert moved == len(shipped_alerts())
