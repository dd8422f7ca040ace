"""The Grafana dashboards as file provisioning and the Helm sidecar load them: no import-time
``__inputs``, a ``datasource`` variable everywhere, ``job``/``instance`` on every query; every
panel query, with the variables substituted as Grafana does, is valid PromQL that returns data
from a real Prometheus scraping the sample app, and the error panels say 0, not "No data"."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from flask_observe import contrib
from sample_app import create_app, observe
from sample_app.platform import create_platform_app

from .conftest import LiveServer
from .test_contrib import metric_names, need_tool
from .test_multiprocess import Gunicorn, free_port
from .test_prometheus_integration import Process, wait_until

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = contrib.path("grafana/flask_observe_dashboard.json")
SCRAPER = ROOT / "sample_app" / "grafana" / "scraper_dashboard.json"
PROVIDER = contrib.path("grafana/provisioning/dashboards/flask_observe.yml")
DATASOURCE = contrib.path("grafana/provisioning/datasources/prometheus.yml")
DEPLOYMENT = ROOT / "docs" / "deployment.md"

DS_VARIABLE = {"type": "prometheus", "uid": "${datasource}"}
#: Panels over 5xx responses: 0 on every series that has traffic and no 5xx.
HTTP_ERROR_PANELS = {
    "5xx ratio (time range)",
    "5xx ratio by instance",
    "5xx per second by route",
    "Availability burn rate",
}
#: Panels counting failing checks and open breakers: 0 while none fails or is open.
STATE_ERROR_PANELS = {"Failing health checks", "Open circuit breakers"}
#: The dashboards' default time range (now-6h) as Grafana turns it into variables; the test's
#: Prometheus scrapes every second (its data source's scrape interval, ``timeInterval``).
SCRAPE_SECONDS = 1
RANGE_SECONDS = 6 * 3600
INTERVAL_SECONDS = 20  # 6 h over a ~1000-pixel panel, rounded as Grafana rounds it


#: The sample app's operator token: its /api/debug/fail (the failing traffic) needs it.
DEBUG_TOKEN = "dashboards-debug-token-0123456789abcdef"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows too (rows themselves left out)."""
    out = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in panels(dashboard) for t in p.get("targets", [])]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


# -- Grafana's interpolation of Prometheus queries -------------------------------------------


def regex_escape(value: str) -> str:
    """Grafana's ``prometheusSpecialRegexEscape`` (classic behaviour): a value of a multi-value
    or include-all variable becomes a regular expression inside a PromQL string, so a backslash
    is written as four and a regex metacharacter gets two backslashes before it."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]+?.()|]", lambda m: "\\\\" + m[0], value)


def format_value(variable: dict[str, Any], values: list[str]) -> str:
    """What Grafana writes for ``$name`` in a Prometheus query (``interpolateQueryExpr``)."""
    if not variable.get("multi") and not variable.get("includeAll"):
        assert len(values) == 1
        return values[0].replace("\\", "\\\\").replace("'", "\\\\'")
    escaped = [regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def builtins(scrape_seconds: int = SCRAPE_SECONDS) -> dict[str, str]:
    """Grafana's global variables for the default time range: ``$__rate_interval`` is
    ``max($__interval + scrape interval, 4 * scrape interval)``."""
    rate_interval = max(INTERVAL_SECONDS + scrape_seconds, 4 * scrape_seconds)
    return {
        "__rate_interval": f"{rate_interval}s",
        "__interval": f"{INTERVAL_SECONDS}s",
        "__interval_ms": str(INTERVAL_SECONDS * 1000),
        "__range": f"{RANGE_SECONDS}s",
        "__range_s": str(RANGE_SECONDS),
        "__range_ms": str(RANGE_SECONDS * 1000),
    }


def interpolate(expr: str, dashboard: dict[str, Any], chosen: dict[str, list[str]]) -> str:
    """``expr`` with every ``$var`` / ``${var}`` replaced: the template variables by the values
    ``chosen`` (a textbox by its current value when not chosen), the globals by
    :func:`builtins`. A variable left unreplaced fails the test."""
    defined = variables(dashboard)
    replacements = dict(builtins())
    for name, variable in defined.items():
        if name in chosen:
            replacements[name] = format_value(variable, chosen[name])
        elif variable["type"] == "textbox":
            replacements[name] = format_value(variable, [variable["current"]["value"]])
    # Longest names first: $__range_ms before $__range.
    for name in sorted(replacements, key=len, reverse=True):
        value = replacements[name]
        expr = expr.replace("${" + name + "}", value)
        expr = re.sub(r"\$" + re.escape(name) + r"(?!\w)", lambda _m, v=value: v, expr)  # type: ignore[misc]
    assert "$" not in expr, f"variable left in {expr}"
    return expr


# -- structure -------------------------------------------------------------------------------

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")


def unscoped_selectors(expr: str) -> list[str]:
    """The vector selectors of ``expr`` that do not select on both ``job=~"$job"`` and
    ``instance=~"$instance"``, metric names written without ``{…}`` included."""
    bad = []
    for match in _SELECTOR.finditer(expr):
        matchers = {m.replace(" ", "") for m in match[2].split(",")}
        if not {'job=~"$job"', 'instance=~"$instance"'} <= matchers:
            bad.append(match[0])
    bad.extend(sorted(metric_names(_SELECTOR.sub(" ", expr))))
    return bad


def test_the_scope_checker_finds_every_unscoped_selector() -> None:
    """The structural check below finds a selector without instance, one without braces, and
    passes a fully scoped expression."""
    scope = 'job=~"$job", instance=~"$instance"'
    assert unscoped_selectors(f'sum(rate(a{{{scope}, le="0.5"}}[5m])) / b{{{scope}}}') == []
    assert unscoped_selectors('sum(a{job=~"$job"})') == ['a{job=~"$job"}']
    assert unscoped_selectors(f"a{{{scope}}} or 0 * sum by (job) (b)") == ["b"]
    assert unscoped_selectors('x{instance=~"$instance",job=~"$job"}') == []


@pytest.mark.parametrize("path", [LIBRARY, SCRAPER], ids=["library", "scraper"])
def test_dashboard_loads_by_provisioning_without_import_inputs(path: Path) -> None:
    """What file provisioning and the kube-prometheus-stack sidecar need: no ``__inputs`` nor
    ``${DS_…}`` placeholders (they stay literal there: "Datasource ${DS_PROMETHEUS} was not
    found"), no numeric id; a ``datasource`` variable of type datasource over Prometheus that
    every panel, every target and every query variable uses; ``job`` and ``instance``
    variables (label_values, multi-value, All) that every query selects on."""
    text = path.read_text()
    dashboard = json.loads(text)
    assert "__inputs" not in dashboard
    assert "DS_PROMETHEUS" not in text
    assert "${DS_" not in text
    assert dashboard.get("id") is None
    assert dashboard["uid"]
    defined = variables(dashboard)
    source = defined["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    for name in ("job", "instance"):
        variable = defined[name]
        assert variable["type"] == "query"
        assert variable["multi"] is True
        assert variable["includeAll"] is True
        assert "allValue" not in variable  # "All" is the list of values, as a regex
        assert re.fullmatch(
            r"label_values\(\w+(\{[^}]*\})?, " + name + r"\)", variable["definition"]
        )
    assert '{job=~"$job"}' in defined["instance"]["definition"]
    for variable in defined.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DS_VARIABLE, variable["name"]
    assert panels(dashboard)
    for panel in panels(dashboard):
        assert panel["datasource"] == DS_VARIABLE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DS_VARIABLE, panel["title"]
            assert unscoped_selectors(target["expr"]) == [], (panel["title"], target["expr"])
    # Unique panel ids and refIds: Grafana keys panels and queries by them.
    ids = [p["id"] for p in dashboard["panels"]] + [
        p["id"] for row in dashboard["panels"] for p in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def documented_metrics() -> set[str]:
    """The sample names of every metric in docs/metrics.md's table (histograms expanded)."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    names = set()
    for name, kind in re.findall(r"^\| `([a-z_:]+)` \| (\w+) \|", text, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def test_the_library_dashboard_uses_the_library_metrics_only() -> None:
    """Every metric the library dashboard selects is one docs/metrics.md lists (or Prometheus'
    own ``up``), its job variable reads a flask_observe metric, and each of those metrics has a
    panel; the scraper's business metrics are on the sample's own dashboard, which selects
    nothing else. Both keep their uids (links and bookmarks point at them)."""
    library, scraper = load(LIBRARY), load(SCRAPER)
    assert library["uid"] == "flask-observe"
    assert scraper["uid"] == "flask-observe-sample-scraper"
    known = documented_metrics()
    assert "flask_observe_health_check_status" in known  # the table was read
    used = set()
    for title, target in targets(library):
        selected = metric_names(target["expr"])
        assert selected, title
        assert selected <= known | {"up"}, (title, selected - known)
        used |= selected
    job_metric = re.match(r"label_values\((\w+)", variables(library)["job"]["definition"])
    assert job_metric is not None
    assert job_metric[1] in known
    families = {n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for n in used}
    for name in known:
        base = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        assert base in families, f"no panel for {name}"
    for title, target in targets(scraper):
        assert all(n.startswith("scraper_") for n in metric_names(target["expr"])), title
    assert len(targets(library)) >= 25


def test_the_provisioning_files_parse_and_point_at_the_dashboards() -> None:
    """The shipped provider loads dashboards from files in a directory; the data source file
    defines a Prometheus with its scrape interval (what ``$__rate_interval`` is computed from).
    docs/deployment.md copies the dashboards where the provider reads them."""
    provider = yaml.safe_load(PROVIDER.read_text())
    assert provider["apiVersion"] == 1
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    path = entry["options"]["path"]
    assert path.startswith("/")
    datasource = yaml.safe_load(DATASOURCE.read_text())
    assert datasource["apiVersion"] == 1
    (source,) = datasource["datasources"]
    assert (source["type"], source["access"]) == ("prometheus", "proxy")
    assert re.fullmatch(r"\d+[smh]", source["jsonData"]["timeInterval"])
    assert source["url"].startswith("http")
    assert path in DEPLOYMENT.read_text()


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(r"^```" + language + r"\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def grafana_section() -> str:
    text = DEPLOYMENT.read_text()
    start = text.index("## Grafana")
    end = text.index("\n## ", start + 1)
    return text[start:end]


@pytest.mark.realtime
def test_the_grafana_docs_yaml_parses_and_the_copy_commands_run(tmp_path: Path) -> None:
    """Every YAML block of docs/deployment.md's Grafana section parses (the provider, the
    Helm values, the kustomization), and its shell block for file provisioning, run with
    Grafana's directories moved under a temporary one, puts the dashboard and both
    provisioning files where the provider and Grafana read them."""
    section = grafana_section()
    blocks = code_blocks(section, "yaml")
    assert len(blocks) >= 3
    for block in blocks:
        assert list(yaml.safe_load_all(block)), block
    (copy,) = [b for b in code_blocks(section, "sh") if "/etc/grafana/provisioning" in b]
    script = copy.replace("sudo ", "").replace("/etc/grafana", f"{tmp_path}/etc/grafana")
    script = script.replace("/var/lib/grafana", f"{tmp_path}/var/lib/grafana")
    venv_python = str(Path(sys.executable).parent)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{venv_python}:/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    dashboards = tmp_path / "var/lib/grafana/dashboards/flask_observe"
    assert load(dashboards / "flask_observe_dashboard.json")["uid"] == "flask-observe"
    provisioning = tmp_path / "etc/grafana/provisioning"
    assert (provisioning / "dashboards" / PROVIDER.name).read_text() == PROVIDER.read_text()
    assert (provisioning / "datasources" / DATASOURCE.name).read_text() == DATASOURCE.read_text()


# -- against a real Prometheus ---------------------------------------------------------------


class Traffic:
    """Requests to the sample app every 0.2 s, as users and a kubelet would: the account list,
    a scrape (which calls the demo platform), the readiness probe (which runs the health
    checks); after :meth:`fail`, also a request that raises (500)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failing = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {DEBUG_TOKEN}"
        deadline = time.monotonic() + 300  # bounded whatever happens to the test
        while not self.stopped.is_set() and time.monotonic() < deadline:
            for method, path in (
                ("GET", "/api/accounts"),
                ("POST", "/api/scrapes"),
                ("GET", "/health/ready"),
            ) + ((("GET", "/api/debug/fail"),) if self.failing.is_set() else ()):
                with contextlib.suppress(requests.RequestException):
                    session.request(method, self.url + path, timeout=10)
            self.stopped.wait(0.2)

    def fail(self) -> None:
        self.failing.set()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(15)


class Prometheus:
    """The Prometheus server's HTTP API, as Grafana's data source calls it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; fails the test unless Prometheus answers ``success``."""
        response = requests.post(self.url + "/api/v1/query", data={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]  # type: ignore[no-any-return]

    def label_values(
        self, definition: str, dashboard: dict[str, Any], chosen: dict[str, list[str]]
    ) -> list[str]:
        """A ``label_values(selector, label)`` variable's options, the way Grafana's
        Prometheus data source asks for them (``/api/v1/label/<label>/values?match[]=``)."""
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", definition)
        assert match is not None, definition
        selector = interpolate(match[1], dashboard, chosen)
        now = time.time()
        params: dict[str, str | float] = {
            "match[]": selector,
            "start": now - RANGE_SECONDS,
            "end": now,
        }
        response = requests.get(
            f"{self.url}/api/v1/label/{match[2]}/values",
            params=params,
            timeout=10,
        )
        body = response.json()
        assert body["status"] == "success", body
        return sorted(body["data"])


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The sample scraper under gunicorn (2 workers) and the demo platform it calls, both
    scraped every second by a real Prometheus (jobs ``scraper`` and ``platform``), with
    :class:`Traffic` running."""
    binary = need_tool("prometheus")
    platform_app = create_platform_app(OBSERVE_LOG_STDOUT=False)
    with LiveServer(platform_app) as platform:
        db = f"sqlite:///{tmp_path / 'scraper.db'}"
        seeded = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": db,
                "OBSERVE_LOG_STDOUT": False,
                "OBSERVE_LOG_DIR": str(tmp_path / "logs"),
            }
        )
        observe.shutdown(seeded)
        app = Gunicorn(
            tmp_path,
            "sample_app:create_app()",
            env={
                "FLASK_SQLALCHEMY_DATABASE_URI": db,
                "FLASK_SCRAPER_PLATFORM_URL": platform.url,
                "FLASK_SCRAPER_SEED_DEMO": "false",
                "FLASK_OBSERVE_LOG_STDOUT": "false",
                "FLASK_OBSERVE_LOG_DIR": str(tmp_path / "logs"),
                # /api/debug/fail, the failing traffic, needs the operator's token.
                "FLASK_OBSERVE_AUTH_TOKEN": DEBUG_TOKEN,
                "FLASK_OBSERVE_SAMPLE_INTERVAL_SECONDS": "0.25",
                # The growth gauge reports once half its window has passed.
                "FLASK_OBSERVE_MEMORY_WINDOW_SECONDS": "2",
            },
        )
        traffic = Traffic(app.url)
        prometheus: Process | None = None
        try:
            port = free_port()
            config = tmp_path / "prometheus.yml"
            config.write_text(
                f"global: {{scrape_interval: {SCRAPE_SECONDS}s, evaluation_interval: 1s}}\n"
                "scrape_configs:\n"
                "  - job_name: scraper\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{app.port}']}}]\n"
                "  - job_name: platform\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{platform.port}']}}]\n"
            )
            prometheus = Process(
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

            wait_until(ready, 30, "prometheus to be ready")
            yield {
                "prometheus": Prometheus(url),
                "traffic": traffic,
                "targets": {
                    "scraper": f"127.0.0.1:{app.port}",
                    "platform": f"127.0.0.1:{platform.port}",
                },
            }
        finally:
            traffic.stop()
            if prometheus is not None:
                prometheus.stop()
            app.stop()
            observe.shutdown(platform_app)


def evaluate(
    prom: Prometheus, dashboard: dict[str, Any], chosen: dict[str, list[str]]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every target of ``dashboard`` evaluated now with the variables ``chosen``, keyed by
    (panel title, refId)."""
    return {
        (title, target["refId"]): prom.query(interpolate(target["expr"], dashboard, chosen))
        for title, target in targets(dashboard)
    }


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(series["value"][1]) for series in result]


def all_of(
    prom: Prometheus, dashboard: dict[str, Any], **chosen: list[str]
) -> dict[str, list[str]]:
    """``chosen`` plus "All" for job and instance: every value their queries find, in order
    (job first, then the instances of the chosen jobs), as Grafana resolves them."""
    defined = variables(dashboard)
    for name in ("job", "instance"):
        if name not in chosen:
            chosen[name] = prom.label_values(defined[name]["definition"], dashboard, chosen)
    return chosen


@pytest.mark.realtime
@pytest.mark.services
def test_every_panel_query_is_valid_promql_with_data_and_errors_read_zero(
    scraped: dict[str, Any],
) -> None:
    """With job and instance on "All" (a regex of every value, escaped as Grafana escapes it):
    healthy, every library panel query answers ``success`` with data and every error panel
    reads exactly 0 on every series; after requests that fail with 500, the 5xx panels show
    them while the demo platform, which had no error, still reads 0 (not "No data"). Every
    scraper panel query is valid and has data (the Celery queue is the library's panel now,
    0 without a worker). A job or instance that matches nothing leaves every panel empty: each
    query is scoped by both."""
    prom: Prometheus = scraped["prometheus"]
    library, scraper = load(LIBRARY), load(SCRAPER)
    titles = {p["title"] for p in panels(library)}
    assert titles >= HTTP_ERROR_PANELS | STATE_ERROR_PANELS

    def has_data() -> dict[tuple[str, str], list[dict[str, Any]]] | None:
        chosen = all_of(prom, library)
        if sorted(chosen["job"]) != ["platform", "scraper"]:
            return None
        results = evaluate(prom, library, chosen)
        missing = [key for key, result in results.items() if not result]
        return None if missing else results

    try:
        healthy = wait_until(has_data, 90, "every library panel to have data", interval=1.0)
    except AssertionError:
        results = evaluate(prom, library, all_of(prom, library))
        raise AssertionError([key for key, result in results.items() if not result]) from None
    chosen = all_of(prom, library)
    assert chosen["instance"] == sorted(scraped["targets"].values())
    for (title, ref), result in healthy.items():
        if title in HTTP_ERROR_PANELS | STATE_ERROR_PANELS:
            assert values(result), (title, ref)
            assert set(values(result)) == {0.0}, (title, ref, result)

    # Requests that fail: the 5xx panels show them, and 0 for the series without errors.
    scraped["traffic"].fail()
    wait_until(
        lambda: prom.query(
            'sum(rate(http_requests_total{job="scraper", route="/api/debug/fail",'
            ' status="500"}[10s])) > 0'
        ),
        30,
        "the 500s to be scraped",
    )
    broken = evaluate(prom, library, all_of(prom, library))
    for key, result in broken.items():
        assert result, key
    platform_only = evaluate(prom, library, all_of(prom, library, job=["platform"]))
    for (title, ref), result in broken.items():
        if title not in HTTP_ERROR_PANELS:
            continue
        assert max(values(result)) > 0, (title, ref, result)
        # Per series: each series of the healthy run is still there (a lone `or vector(0)`
        # would give one unlabelled 0 when healthy and drop it once one series has errors).
        labels = [s["metric"] for s in result]
        for series in healthy[(title, ref)]:
            assert series["metric"] in labels, (title, ref, series, result)
        calm = platform_only[(title, ref)]
        assert values(calm), (title, ref)
        assert set(values(calm)) == {0.0}, (title, ref, calm)
    by_route = {
        s["metric"]["route"]: float(s["value"][1]) for s in broken[("5xx per second by route", "A")]
    }
    assert by_route["/api/debug/fail"] > 0
    assert by_route["/api/accounts"] == 0.0

    business = evaluate(prom, scraper, all_of(prom, scraper))
    for (title, ref), result in business.items():
        assert result, (title, ref)

    for dashboard in (library, scraper):
        every = all_of(prom, dashboard)
        for name in ("job", "instance"):
            nowhere = {**every, name: ["no-such-" + name]}
            for key, result in evaluate(prom, dashboard, nowhere).items():
                assert result == [], (name, key, result)
