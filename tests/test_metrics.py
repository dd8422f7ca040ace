"""Prometheus metrics: per-app registry, bounded RED labels, exemplars, business API, /metrics."""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from flask_observe import Observe
from flask_observe.metrics import MetricNameError, Metrics
from flask_observe.metrics.http import UNMATCHED
from flask_observe.state import current_state

TOKEN = "metrics-cVpWEHKJtgYMPMcT-2JJLW7e"


def sample_value(app: Flask, name: str, **labels: str) -> float:
    """Read one sample from the app's own registry (0 if absent)."""
    registry = current_state(app).get(Metrics).registry  # type: ignore[union-attr]
    value = registry.get_sample_value(name, labels)
    return value or 0.0


def scrape(app: Flask, **headers: str) -> dict[str, list]:
    response = app.test_client().get("/metrics", headers=headers)
    assert response.status_code == 200
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        out.setdefault(family.name, []).extend(family.samples)
    return out


class ReadingClient(FlaskClient):
    """Reads each response body, as a server would: the request is finished (and measured)
    when its body has been sent."""

    def open(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        response = super().open(*args, **kwargs)
        response.get_data()
        return response


def red_app(make_app: Callable[..., Flask], name: str = "redapp", **config: object) -> Flask:
    app = make_app(name, log_stdout=False, **config)
    app.test_client_class = ReadingClient

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return f"user {user_id}"

    @app.route("/items", methods=["GET", "POST"])
    def items() -> str:
        return "items"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    return app


def test_red_metrics_use_route_templates_and_statuses(make_app: Callable[..., Flask]) -> None:
    """Requests are counted by method, URL rule and status; durations land in the histogram;
    nothing is left in progress."""
    app = red_app(make_app)
    client = app.test_client()
    for user_id in range(5):
        assert client.get(f"/users/{user_id}").status_code == 200
    client.post("/items")
    assert client.get("/boom").status_code == 500
    assert client.get("/nope").status_code == 404

    assert (
        sample_value(
            app, "http_requests_total", method="GET", route="/users/<int:user_id>", status="200"
        )
        == 5
    )
    assert (
        sample_value(app, "http_requests_total", method="POST", route="/items", status="200") == 1
    )
    assert sample_value(app, "http_requests_total", method="GET", route="/boom", status="500") == 1
    assert (
        sample_value(app, "http_requests_total", method="GET", route=UNMATCHED, status="404") == 1
    )
    count = sample_value(
        app, "http_request_duration_seconds_count", method="GET", route="/users/<int:user_id>"
    )
    assert count == 5
    assert sample_value(app, "http_requests_in_progress") == 0


def test_requests_in_progress_counts_the_running_request(make_app: Callable[..., Flask]) -> None:
    """Inside a view the gauge shows the request itself; afterwards it is back to 0."""
    app = red_app(make_app, "inprogress")
    seen: list[float] = []

    @app.get("/look")
    def look() -> str:
        seen.append(sample_value(app, "http_requests_in_progress"))
        return "ok"

    app.test_client().get("/look")
    app.test_client().get("/look")
    assert seen == [1.0, 1.0]
    assert sample_value(app, "http_requests_in_progress") == 0


def test_exclusions_anchored_or_not_match_the_same_paths() -> None:
    """The shared exclusion list gives the same answers whether patterns are anchored
    (tried at the start only) or not (searched anywhere)."""
    from flask_observe._internal import compile_exclusions

    anchored = compile_exclusions((r"^/metrics$", r"^/health/(live|ready|startup)$"))
    assert anchored is not None
    assert anchored("/metrics")
    assert anchored("/health/ready")
    assert not anchored("/x/metrics")
    assert not anchored("/health/readyz")
    loose = compile_exclusions((r"^/a|/b", r"static"))
    assert loose is not None
    assert loose("/x/b")
    assert loose("/assets/static/x.css")
    assert loose("/a")
    assert not loose("/c")


def test_two_apps_in_one_process_keep_separate_registries(make_app: Callable[..., Flask]) -> None:
    """Each app counts only its own requests and defines its own business metrics."""
    first, second = red_app(make_app, "first"), red_app(make_app, "second")
    first.test_client().get("/items")
    first.test_client().get("/items")
    second.test_client().get("/items")
    labels = {"method": "GET", "route": "/items", "status": "200"}
    assert sample_value(first, "http_requests_total", **labels) == 2
    assert sample_value(second, "http_requests_total", **labels) == 1
    for app in (first, second):  # same name in both apps: no "Duplicated timeseries" error
        current_state(app).get(Metrics).counter("jobs_done_total", "Jobs.").inc()  # type: ignore[union-attr]
    assert sample_value(first, "jobs_done_total") == 1


def test_random_paths_and_invented_methods_leave_series_bounded(
    make_app: Callable[..., Flask],
) -> None:
    """10k requests with random paths and made-up methods: the series count stays within
    routes x methods x statuses, and every invented method is folded into OTHER."""
    app = red_app(make_app)
    client = app.test_client()
    rng = random.Random(6)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    for _ in range(10_000):
        if rng.random() < 0.5:
            method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
        else:
            method = rng.choice(methods)
        roll = rng.random()
        if roll < 0.3:
            path = f"/users/{rng.randint(0, 10**9)}"
        elif roll < 0.4:
            path = "/items"
        else:
            path = "/" + "/".join(
                "".join(
                    rng.choices(
                        string.ascii_letters + string.digits + "%-._~", k=rng.randint(1, 20)
                    )
                )
                for _ in range(rng.randint(1, 4))
            )
        client.open(path, method=method)
    families = scrape(app)
    series = [s for s in families["http_requests"] if s.name == "http_requests_total"]
    method_labels = {s.labels["method"] for s in series}
    route_labels = {s.labels["route"] for s in series}
    status_labels = {s.labels["status"] for s in series}
    assert method_labels <= {*methods, "OTHER"}
    assert "OTHER" in method_labels
    assert route_labels <= {"/users/<int:user_id>", "/items", "/boom", "/metrics", UNMATCHED}
    # Routes (4 + unmatched) x methods (7 + OTHER) x the statuses Flask can answer here.
    assert len(series) <= 5 * 8 * len(status_labels)
    assert len(status_labels) <= 5  # 200, 404, 405 (+ 500/HEAD variants at most)
    buckets = [s for s in families["http_request_duration_seconds"] if s.name.endswith("_bucket")]
    assert len(buckets) <= 5 * 8 * (len(current_state(app).config.metrics_buckets) + 1)
    assert sum(s.value for s in series) == 10_000


def test_excluded_paths_are_not_measured(make_app: Callable[..., Flask]) -> None:
    """The shared exclusion list keeps /metrics itself and probes out of the RED metrics."""
    app = red_app(make_app, excluded_paths=[r"^/metrics$", r"^/items$"])
    client = app.test_client()
    client.get("/items")
    client.get("/metrics")
    client.get("/users/1")
    assert sample_value(app, "http_requests_total", method="GET", route="/items", status="200") == 0
    assert (
        sample_value(app, "http_requests_total", method="GET", route="/metrics", status="200") == 0
    )
    assert (
        sample_value(
            app, "http_requests_total", method="GET", route="/users/<int:user_id>", status="200"
        )
        == 1
    )


def test_metrics_work_with_correlation_ids_off(make_app: Callable[..., Flask]) -> None:
    """With OBSERVE_CORRELATION_ENABLED=False requests are still timed and counted, and no
    X-Request-ID header is added."""
    app = red_app(make_app, correlation_enabled=False)
    response = app.test_client().get("/users/3")
    assert "X-Request-ID" not in response.headers
    assert (
        sample_value(
            app, "http_requests_total", method="GET", route="/users/<int:user_id>", status="200"
        )
        == 1
    )


def test_metrics_off_installs_nothing(make_app: Callable[..., Flask]) -> None:
    """OBSERVE_METRICS_ENABLED=False: no /metrics route, no state."""
    app = red_app(make_app, metrics_enabled=False)
    assert current_state(app).get(Metrics) is None
    assert app.test_client().get("/metrics").status_code == 404


def test_metrics_endpoint_behind_shared_auth(make_app: Callable[..., Flask]) -> None:
    """OBSERVE_METRICS_AUTH: 401 without the token, 403 with a wrong one, 200 with it."""
    app = red_app(make_app, metrics_auth=True, auth_token=TOKEN)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert (
        client.get("/metrics", headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code
        == 403
    )
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert b"http_requests_total" in ok.data


def test_text_format_by_default_openmetrics_when_negotiated(make_app: Callable[..., Flask]) -> None:
    """Plain scrapes get the Prometheus text format; an OpenMetrics Accept header gets
    OpenMetrics (ending in # EOF)."""
    app = red_app(make_app)
    client = app.test_client()
    client.get("/items")
    plain = client.get("/metrics")
    assert plain.content_type.startswith("text/plain")
    assert b"# EOF" not in plain.data
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.content_type.startswith("application/openmetrics-text")
    assert om.data.rstrip().endswith(b"# EOF")


@pytest.fixture
def tracer_provider() -> Iterator[object]:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    yield provider
    provider.shutdown()


def traced_app(
    make_app: Callable[..., Flask],
    provider: object,
    seen: list[str] | None = None,
    **config: object,
) -> Flask:
    """An app whose requests run inside a current span, the way OTel's Flask instrumentation
    does it (attached in before_request, detached in teardown_request)."""
    from opentelemetry import context, trace

    app = red_app(make_app, "traced", **config)
    tracer = provider.get_tracer("test")  # type: ignore[attr-defined]

    @app.before_request
    def start_span() -> None:
        span = tracer.start_span("request")
        g.span = span
        g.token = context.attach(trace.set_span_in_context(span))

    @app.teardown_request
    def end_span(exc: BaseException | None) -> None:
        if seen is not None:
            seen.append(format(g.span.get_span_context().trace_id, "032x"))
        g.span.end()
        context.detach(g.token)

    return app


def test_exemplars_carry_the_trace_id_in_openmetrics(
    make_app: Callable[..., Flask], tracer_provider: object
) -> None:
    """With a span current during the request, the duration histogram carries its trace ID
    as an exemplar in the OpenMetrics exposition (and never in the text format)."""
    seen: list[str] = []
    app = traced_app(make_app, tracer_provider, seen=seen)
    client = app.test_client()
    client.get("/items")
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    text = om.get_data(as_text=True)
    exemplar_lines = [
        line
        for line in text.splitlines()
        if line.startswith("http_request_duration_seconds_bucket")
        and 'route="/items"' in line
        and " # " in line
    ]
    assert len(exemplar_lines) == 1
    trace_id = exemplar_lines[0].split('trace_id="')[1][:32]
    assert trace_id == seen[0]
    plain = client.get("/metrics").get_data(as_text=True)
    assert "trace_id" not in plain


def test_no_exemplars_when_turned_off_or_no_span(
    make_app: Callable[..., Flask], tracer_provider: object
) -> None:
    """OBSERVE_METRICS_EXEMPLARS=False, or no current span: no exemplar."""
    for app in (
        traced_app(make_app, tracer_provider, metrics_exemplars=False),
        red_app(make_app, "plain"),
    ):
        client = app.test_client()
        client.get("/items")
        om = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        assert "trace_id" not in om.get_data(as_text=True)


def test_business_api_follows_prometheus_naming_rules(make_app: Callable[..., Flask]) -> None:
    """Counters end in _total, base units only, no reserved labels; asking twice gives the
    same object; a clash of kind or labels is an error that says so."""
    app = red_app(make_app)
    metrics = current_state(app).get(Metrics)
    assert metrics is not None
    jobs = metrics.counter("jobs_processed_total", "Jobs.", ["queue"])
    assert metrics.counter("jobs_processed_total", "Jobs.", ["queue"]) is jobs
    jobs.labels("default").inc(3)
    metrics.histogram("job_duration_seconds", "Job time.").observe(0.2)
    metrics.gauge("queue_depth", "Depth.").set(7)
    families = scrape(app)
    assert families["jobs_processed"][0].value == 3
    assert families["queue_depth"][0].value == 7
    bad = [
        ("counter", "jobs_processed", "_total"),
        ("histogram", "job_duration_milliseconds", "base units"),
        ("gauge", "queue:depth", "no colons"),
        ("gauge", "errors_total", "'_total' is for counters"),
    ]
    for kind, name, message in bad:
        with pytest.raises(MetricNameError, match=message):
            getattr(metrics, kind)(name, "doc")
    with pytest.raises(MetricNameError, match="reserved"):
        metrics.histogram("x_seconds", "doc", ["le"])
    with pytest.raises(MetricNameError, match="already a counter"):
        metrics.gauge("jobs_processed_total", "doc")


def test_observe_metrics_property_is_the_current_apps(make_app: Callable[..., Flask]) -> None:
    """``observe.metrics`` inside a request is that app's Metrics."""
    observe = Observe()
    app = Flask("prop")
    app.config["OBSERVE_LOG_STDOUT"] = False
    observe.init_app(app)
    try:

        @app.get("/work")
        def work() -> str:
            observe.metrics.counter("work_done_total", "Work.").inc()
            return "ok"

        app.test_client().get("/work")
        app.test_client().get("/work")
        assert sample_value(app, "work_done_total") == 2
    finally:
        observe.shutdown(app)
