"""Every Python snippet of the README and docs/ runs, and the important ones do what the page says.

The convention, for whoever writes a page:

- A ```` ```python ```` block must run on its own, in a fresh namespace and an empty working
  directory, as a reader would paste it into a new file: its imports are in it.
- When a page shows a fragment of the reader's own app (``app.config[...] = ...``, a check using
  their Redis client), the line right before the block names what the fragment assumes, in an
  HTML comment (invisible on GitHub and on the site)::

      <!-- snippet: setup=observe_app,redis_client check=queue_depth -->

  ``setup=`` lists preludes from :data:`SETUPS` below: each makes the names the fragment uses
  (``app``, ``observe``, ``redis_client``…) from real components where one runs here (Redis,
  a webhook receiver on loopback), or a small stand-in for an object only the reader has
  (their search index, their S3 client). ``check=`` names a function from :data:`CHECKS` that
  then proves the snippet does what the page says (the route answers, the alert arrives).
- ``<!-- snippet: skip="why" -->`` leaves a block out, with its reason in the test report.
  Keep these rare: today there are none.

Besides running, each snippet is checked statically for names used but never defined (in
function bodies too, which running alone would not reach): ``Flask`` used in ``create_app()``
without an import is a failure even if nobody calls ``create_app()``.
"""

from __future__ import annotations

import builtins
import contextlib
import re
import shlex
import symtable
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_observe import Observe
from flask_observe.alerting import AlertRouter, RuleEngine
from flask_observe.health import HealthRunner
from flask_observe.state import current_state

from .alert_sinks import Sink
from .conftest import need_service, refused_port

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
PYTHON = {"python", "py", "python3"}
TOKEN = "docs-snippet-token-0123456789"

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_DIRECTIVE = re.compile(r"^<!--\s*snippet:(?P<body>.*?)-->\s*$")


@dataclass
class Snippet:
    page: Path
    line: int  #: 1-based line of the opening fence
    code: str
    setup: tuple[str, ...] = ()
    check: str | None = None
    skip: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass
class Directive:
    page: Path
    line: int
    options: dict[str, str]
    used: bool = False


def _parse_directive(page: Path, line: int, body: str) -> Directive:
    options: dict[str, str] = {}
    for item in shlex.split(body):
        key, _, value = item.partition("=")
        options[key] = value
    return Directive(page, line, options)


def parse(page: Path) -> tuple[list[Snippet], list[Directive]]:
    """The Python blocks of a page, and every snippet directive found on it."""
    snippets: list[Snippet] = []
    directives: list[Directive] = []
    lines = page.read_text("utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            found = _DIRECTIVE.match(lines[index].strip())
            if found:
                directives.append(_parse_directive(page, index + 1, found["body"]))
            index += 1
            continue
        fence, lang, start = opening["fence"], opening["lang"].lower(), index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith(fence):
            body.append(lines[index])
            index += 1
        index += 1
        if lang not in PYTHON:
            continue
        snippet = Snippet(page, start + 1, "\n".join(body) + "\n")
        if directives and directives[-1].line == start:  # the line right before the fence
            directive = directives[-1]
            directive.used = True
            options = directive.options
            snippet.setup = tuple(filter(None, options.get("setup", "").split(",")))
            snippet.check = options.get("check") or None
            snippet.skip = options.get("skip") or None
        snippets.append(snippet)
    return snippets, directives


def all_snippets() -> list[Snippet]:
    return [snippet for page in PAGES for snippet in parse(page)[0]]


# --- What the fragments assume: the reader's objects ---------------------------------------


@dataclass
class Context:
    """What a setup or a check may use; everything it starts is stopped after the test."""

    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path
    stack: contextlib.ExitStack
    apps: list[Flask] = field(default_factory=list)

    def observed(self, app: Flask) -> Flask:
        self.apps.append(app)
        return app


def _app(ctx: Context) -> dict[str, Any]:
    return {"app": ctx.observed(Flask("snippet"))}


def _observe_app(ctx: Context) -> dict[str, Any]:
    app = ctx.observed(Flask("snippet"))
    app.config.update(OBSERVE_LOG_STDOUT=False, OBSERVE_AUTH_TOKEN=TOKEN)
    return {"app": app, "observe": Observe(app)}


def _alert_env(ctx: Context) -> dict[str, Any]:
    ctx.monkeypatch.setenv("PD_KEY", "0123456789abcdef0123456789abcdef")
    ctx.monkeypatch.setenv("SLACK_WEBHOOK", "https://hooks.slack.com/services/T0/B0/docsnippet")
    ctx.monkeypatch.setenv("SMTP_PASSWORD", "docs-snippet-smtp-password")
    return {}


def _alerting_app(ctx: Context) -> dict[str, Any]:
    sink = ctx.stack.enter_context(Sink())
    app = ctx.observed(Flask("snippet"))
    app.config.update(
        OBSERVE_LOG_STDOUT=False,
        OBSERVE_ALERT_CHANNELS=[{"type": "webhook", "name": "ops", "url": f"{sink.url}/hook"}],
        OBSERVE_ALERT_ALLOW_HTTP=True,
        OBSERVE_ALERT_ALLOW_HOSTS=["127.0.0.1"],
    )
    return {"app": app, "observe": Observe(app), "sink": sink}


def _scraper_rules(ctx: Context) -> dict[str, Any]:
    import pybreaker

    return {
        "no_recent_scrape": lambda: "no account scraped successfully for 6 hours",
        "platform_breaker": pybreaker.CircuitBreaker(name="platform-api"),
        "db_ok": lambda: True,
        "redis_ok": lambda: True,
    }


class _SearchIndex:
    """Stands in for the reader's search index."""

    def lag_seconds(self) -> float:
        return 3.0


def _search_index(ctx: Context) -> dict[str, Any]:
    return {"index": _SearchIndex()}


def _redis_client(ctx: Context) -> dict[str, Any]:
    import redis

    need_service("Redis", "127.0.0.1", 6379)
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=2)
    ctx.stack.callback(client.close)
    return {"redis_client": client}


class _ClientError(Exception):
    """Stands in for botocore's ClientError."""

    response: dict[str, Any] = {"Error": {"Code": "403"}}


def _s3_client(ctx: Context) -> dict[str, Any]:
    calls: list[str] = []

    class _S3:
        def head_bucket(self, *, Bucket: str) -> dict[str, Any]:  # boto3's parameter name
            calls.append(Bucket)
            return {}

    return {
        "client": lambda secret_key: _S3(),
        "ClientError": _ClientError,
        "KEY": "s3-secret-key-never-shown",
        "s3_calls": calls,
    }


def _startup_work(ctx: Context) -> dict[str, Any]:
    done: list[str] = []
    return {
        "run_migrations": lambda: done.append("migrations"),
        "warm_caches": lambda: done.append("caches"),
        "startup_done": done,
    }


def _requests_session(ctx: Context) -> dict[str, Any]:
    import requests

    session = requests.Session()
    ctx.stack.callback(session.close)
    return {"session": session}


def _logs_token(ctx: Context) -> dict[str, Any]:
    ctx.monkeypatch.setenv("LOGS_TOKEN", TOKEN)
    return {}


SETUPS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "app": _app,
    "observe_app": _observe_app,
    "alert_env": _alert_env,
    "alerting_app": _alerting_app,
    "scraper_rules": _scraper_rules,
    "search_index": _search_index,
    "redis_client": _redis_client,
    "s3_client": _s3_client,
    "startup_work": _startup_work,
    "requests_session": _requests_session,
    "logs_token": _logs_token,
}

# --- What the important snippets promise --------------------------------------------------


def _bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _get(app: Flask, path: str, **kwargs: Any) -> Any:
    response = app.test_client().get(path, **kwargs)
    response.close()  # the access line is written when the body is done
    return response


def check_readme_hello(ns: dict[str, Any], ctx: Context) -> None:
    """The README's quickstart: the ID is echoed and returned, and both lines reach the file."""
    import json

    app = ctx.observed(ns["app"])
    response = _get(app, "/hello", headers={"X-Request-ID": "readme-hello-1"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "readme-hello-1"
    assert response.get_json() == {"request_id": "readme-hello-1"}
    lines = [json.loads(x) for x in (ctx.tmp_path / "logs" / "app.log").read_text().splitlines()]
    hello = next(x for x in lines if x["message"] == "saying hello")
    assert hello["who"] == "world"
    assert hello["correlation_id"] == "readme-hello-1"
    access = next(x for x in lines if x["logger"] == "flask_observe.access")
    assert (access["route"], access["status"]) == ("/hello", 200)


def check_app_factory(ns: dict[str, Any], ctx: Context) -> None:
    """One module-level ``Observe()``, any number of apps from the factory."""
    first = ctx.observed(ns["create_app"]({"OBSERVE_SERVICE_NAME": "first"}))
    second = ctx.observed(ns["create_app"]())
    for app in (first, second):
        response = _get(app, "/health/live")
        assert response.status_code == 200
        assert response.headers["X-Request-ID"]
    assert current_state(first).service_name == "first"
    assert current_state(second).service_name != "first"


def check_own_metric(ns: dict[str, Any], ctx: Context) -> None:
    """The business counter shows up on /metrics once the view ran."""
    app = ctx.observed(ns["app"])
    response = app.test_client().post("/api/scrapes")
    response.close()
    assert response.status_code == 201
    text = _get(app, "/metrics").get_data(as_text=True)
    assert 'scraper_accounts_scraped_total{platform="twitter",status="ok"} 1.0' in text


def check_timed_operation(ns: dict[str, Any], ctx: Context) -> None:
    """The page's runs are on /metrics as it says: one success and one failure of
    scrape_account (platform label from the call), a marked failure of export_batch, and the
    streaks."""
    app = ctx.observed(ns["app"])
    text = _get(app, "/metrics").get_data(as_text=True)
    for line in (
        'scrape_account_total{outcome="success",platform="twitter"} 1.0',
        'scrape_account_total{outcome="failure",platform="twitter"} 1.0',
        'scrape_account_duration_seconds_count{outcome="failure",platform="twitter"} 1.0',
        'export_batch_total{outcome="failure"} 1.0',
        'operation_consecutive_failures{operation="scrape_account"} 1.0',
        'operation_consecutive_failures{operation="export_batch"} 1.0',
    ):
        assert line in text, line


def check_alert_channels(ns: dict[str, Any], ctx: Context) -> None:
    """The three channels of the example pass start-up validation, in order, with the secrets
    taken from the environment."""
    app = ns["app"]
    Observe(app)
    router = Observe.handle(AlertRouter, app)
    assert [channel.name for channel in router.channels] == ["pagerduty-0", "slack-1", "email-2"]


def check_alertmanager_channel(ns: dict[str, Any], ctx: Context) -> None:
    """The Alertmanager channel passes start-up validation with the example's fields."""
    from flask_observe.alerting.alertmanager import AlertmanagerChannel

    app = ns["app"]
    Observe(app)
    (channel,) = Observe.handle(AlertRouter, app).channels
    assert isinstance(channel, AlertmanagerChannel)
    assert channel.static_labels == {"cluster": "eu-1"}


def check_alert_rules(ns: dict[str, Any], ctx: Context) -> None:
    """The added rules are evaluated with the app's own, and the failing one reaches the
    channel as an alert."""
    rules = Observe.handle(RuleEngine, ns["app"])
    names = [rule.name for rule in rules.rules]
    assert {"NoSuccessfulScrape", "CircuitBreakerOpen", "HealthCheckFailing"} <= set(names)
    raised = rules.evaluate()
    assert [alert.name for alert in raised] == ["NoSuccessfulScrape"]
    received = ns["sink"].wait_for(1)
    assert len(received) == 1
    assert received[0][2]["name"] == "NoSuccessfulScrape"
    assert received[0][2]["severity"] == "critical"


def check_health_quickstart(ns: dict[str, Any], ctx: Context) -> None:
    """Every check of the example is registered; the database one answers on the real engine."""
    app = ctx.observed(ns["app"])
    health = Observe.handle(HealthRunner, app)
    assert {c.name for c in health.checks} >= {
        "db",
        "cache",
        "billing",
        "disk",
        "memory",
        "search-index",
    }
    health.remove("billing")  # billing.internal is the reader's host, not one of ours
    health.remove("cache")  # the reader's Redis URL: proved with a real one by queue_depth
    document = _get(app, "/health", headers={"Authorization": "Bearer a-long-random-token"})
    checks = document.get_json()["checks"]
    assert checks["db:responseTime"][0]["status"] == "pass"
    assert checks["search-index:responseTime"][0]["status"] == "pass"


def check_queue_depth(ns: dict[str, Any], ctx: Context) -> None:
    """The decorated function runs as a check against the real Redis."""
    document = _get(ns["app"], "/health", headers=_bearer()).get_json()
    entry = document["checks"]["queue-depth:depth"][0]
    assert entry["observedUnit"] == "jobs"
    assert entry["status"] in ("pass", "warn")


def check_s3_check(ns: dict[str, Any], ctx: Context) -> None:
    """The subclass runs, and its secret stays out of its repr and of the document."""
    response = _get(ns["app"], "/health", headers=_bearer())
    entry = response.get_json()["checks"]["uploads:responseTime"][0]
    assert entry["status"] == "pass"
    assert ns["s3_calls"] == ["uploads"]
    assert ns["KEY"] not in response.get_data(as_text=True)
    assert ns["KEY"] not in repr(Observe.handle(HealthRunner, ns["app"]).get("uploads"))


def check_startup_gate(ns: dict[str, Any], ctx: Context) -> None:
    """The factory's own work runs before start-up is declared complete."""
    app = ctx.observed(ns["create_app"]())
    assert ns["startup_done"] == ["migrations", "caches"]
    assert _get(app, "/health/startup").get_json() == {"status": "pass"}


def check_circuit_breaker(ns: dict[str, Any], ctx: Context) -> None:
    """Five failed calls open the breaker, and readiness says so."""
    import pybreaker
    import requests

    app, breaker = ns["app"], ns["breaker"]
    assert isinstance(breaker, pybreaker.CircuitBreaker)
    with refused_port() as port, app.app_context():
        for _ in range(5):
            with contextlib.suppress(requests.ConnectionError, pybreaker.CircuitBreakerError):
                ns["fetch"](f"http://127.0.0.1:{port}/")
    assert breaker.current_state == "open"
    entry = _get(app, "/health/ready", headers=_bearer()).get_json()["checks"][
        "platform-api:circuitBreaker"
    ][0]
    assert (entry["observedValue"], entry["status"]) == ("open", "warn")


def check_logviewer_on(ns: dict[str, Any], ctx: Context) -> None:
    """The viewer lists the log file to the token, and refuses a caller without one."""
    app = ctx.observed(ns["app"])
    assert _get(app, "/api/logs/files").status_code == 401
    files = _get(app, "/api/logs/files", headers=_bearer()).get_json()["files"]
    assert [f["name"] for f in files] == ["app.log"]


CHECKS: dict[str, Callable[[dict[str, Any], Context], None]] = {
    "readme_hello": check_readme_hello,
    "app_factory": check_app_factory,
    "own_metric": check_own_metric,
    "timed_operation": check_timed_operation,
    "alert_channels": check_alert_channels,
    "alert_rules": check_alert_rules,
    "alertmanager_channel": check_alertmanager_channel,
    "health_quickstart": check_health_quickstart,
    "queue_depth": check_queue_depth,
    "s3_check": check_s3_check,
    "startup_gate": check_startup_gate,
    "circuit_breaker": check_circuit_breaker,
    "logviewer_on": check_logviewer_on,
}

# --- The tests ------------------------------------------------------------------------------


def undefined_names(code: str, known: set[str]) -> set[str]:
    """Names the snippet reads, in any scope, that nothing defines: not the snippet's
    module level, not a setup, not a builtin."""
    table = symtable.symtable(code, "<snippet>", "exec")
    defined = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    allowed = defined | known | set(dir(builtins))
    missing = {
        s.get_name()
        for s in table.get_symbols()
        if s.is_referenced() and not (s.is_assigned() or s.is_imported())
    }

    def walk(scope: symtable.SymbolTable) -> None:
        for child in scope.get_children():
            missing.update(
                s.get_name() for s in child.get_symbols() if s.is_global() and s.is_referenced()
            )
            walk(child)

    walk(table)
    return missing - allowed


@pytest.fixture
def context(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Context]:
    monkeypatch.chdir(tmp_path)
    with contextlib.ExitStack() as stack:
        ctx = Context(monkeypatch, tmp_path, stack)
        try:
            yield ctx
        finally:
            shutter = Observe()
            for app in reversed(ctx.apps):
                shutter.shutdown(app)  # any instance may: it removes the app's own state


SNIPPETS = all_snippets()


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs(snippet: Snippet, context: Context) -> None:
    """The block defines every name it uses, runs without error, and (with ``check=``) does
    what its page says."""
    if snippet.skip:
        pytest.skip(f"{snippet.id}: {snippet.skip}")
    # A module of its own, as a pasted file would be (dataclasses and pickling look it up).
    module = types.ModuleType("snippet")
    context.monkeypatch.setitem(sys.modules, "snippet", module)
    namespace = module.__dict__
    for name in snippet.setup:
        namespace.update(SETUPS[name](context))
    missing = undefined_names(snippet.code, set(namespace))
    assert not missing, f"{snippet.id} uses names it never defines: {sorted(missing)}"
    # dont_inherit: not this file's `from __future__ import annotations`.
    code = compile(snippet.code, snippet.id, "exec", dont_inherit=True)
    exec(code, namespace)  # the docs' own code
    for value in list(namespace.values()):
        if isinstance(value, Flask) and value not in context.apps:
            context.observed(value)
    if snippet.check:
        CHECKS[snippet.check](namespace, context)


def test_every_directive_is_attached_and_known() -> None:
    """A directive sits right before a Python block, and names only known keys, setups and
    checks: a typo fails instead of silently running a block without its setup."""
    for page in PAGES:
        _, directives = parse(page)
        for directive in directives:
            where = f"{page.relative_to(ROOT)}:{directive.line}"
            assert directive.used, f"{where}: not right before a Python block"
            assert set(directive.options) <= {"setup", "check", "skip"}, where
            setups = filter(None, directive.options.get("setup", "").split(","))
            assert set(setups) <= set(SETUPS), where
            assert directive.options.get("check", "") in {"", *CHECKS}, where
            assert "skip" not in directive.options or directive.options["skip"], where


def test_the_snippet_collection_is_whole() -> None:
    """Blocks are found on the pages that have them, every setup and check is used, and
    skips stay rare (each one needs a reason)."""
    pages = {s.page.name for s in SNIPPETS}
    assert {"README.md", "quickstart.md", "health.md", "alerting.md", "metrics.md"} <= pages
    assert {name for s in SNIPPETS for name in s.setup} == set(SETUPS)
    assert {s.check for s in SNIPPETS if s.check} == set(CHECKS)
    assert sum(1 for s in SNIPPETS if s.skip) <= 2


@pytest.mark.parametrize(
    ("code", "missing"),
    [
        ("def create_app():\n    return Flask(__name__)\n", {"Flask"}),
        ("from flask import Flask\n\ndef create_app():\n    return Flask(__name__)\n", set()),
        ("class C:\n    x = helper()\n", {"helper"}),
        ("for item in items:\n    pass\n", {"items"}),
        ("import logging\nlogging.getLogger(__name__).info('x')\n", set()),
    ],
)
def test_undefined_names_finds_what_running_would_miss(code: str, missing: set[str]) -> None:
    """The static check reports names a snippet never defines, in function bodies too."""
    assert undefined_names(code, set()) == missing
