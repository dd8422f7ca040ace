"""The application/health+json document, field by field, and the health score."""

from __future__ import annotations

import re

from flask_observe.health import CheckResult, HealthReport, Observation, Status, Trend, score
from flask_observe.health.report import Identity, document

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

#: The keys draft-inadarei-api-health-check-06 defines (sections 3 and 4).
ROOT_KEYS = {
    "status",
    "version",
    "releaseId",
    "notes",
    "output",
    "checks",
    "links",
    "serviceId",
    "description",
}
ENTRY_KEYS = {
    "componentId",
    "componentType",
    "observedValue",
    "observedUnit",
    "status",
    "affectedEndpoints",
    "time",
    "output",
    "links",
}
#: Ours, as section 4.10 allows.
EXTRA_ENTRY_KEYS = {"critical", "durationMs", "recent"}


def result(
    name: str,
    status: Status,
    *,
    critical: bool = True,
    duration: float = 0.01,
    timeout: float = 2.0,
    output: str | None = None,
    observations: tuple[Observation, ...] | None = None,
) -> CheckResult:
    if observations is None:
        observations = (Observation("responseTime", duration * 1000, "ms", status, output),)
    return CheckResult(
        name=name,
        critical=critical,
        status=status,
        observations=observations,
        duration=duration,
        timestamp=1_700_000_000.25,
        timeout=timeout,
        component_type="datastore",
        output=output,
    )


IDENTITY = Identity("scraper", version="1.0.0", release_id="abc123", description="health of x")


def test_status_only_without_details() -> None:
    """Callers without credentials see exactly {"status": …}."""
    report = HealthReport("readiness", (result("db", Status.FAIL, output="refused"),))
    assert document(report, IDENTITY, details=False) == {"status": "fail"}


def test_detailed_document_follows_the_draft() -> None:
    """Root and entry keys are the draft's (plus 4.10 extras); keys are component:measurement;
    values are lists; time is ISO 8601; output only when not pass."""
    report = HealthReport(
        None,
        (
            result("db", Status.PASS),
            result("cache", Status.FAIL, critical=False, output="connection refused"),
            result(
                "disk",
                Status.WARN,
                critical=False,
                observations=(
                    Observation("utilization", 91.5, "percent", Status.WARN, "91.5% used"),
                ),
            ),
        ),
        trends={"db": Trend(3, 3, 0, 0, 1.0, 2.0)},
        uptime=12.5,
    )
    doc = document(report, IDENTITY, details=True)
    assert set(doc) <= ROOT_KEYS
    assert doc["status"] == "warn"
    assert (doc["version"], doc["releaseId"], doc["serviceId"]) == ("1.0.0", "abc123", "scraper")
    assert doc["output"] == "cache: connection refused; disk: 91.5% used"
    assert set(doc["checks"]) == {
        "db:responseTime",
        "cache:responseTime",
        "disk:utilization",
        "uptime",
        "score",
    }
    for key, entries in doc["checks"].items():
        assert ":" not in key.split(":", 1)[0]
        assert isinstance(entries, list)
        for entry in entries:
            assert set(entry) <= ENTRY_KEYS | EXTRA_ENTRY_KEYS
            assert entry["status"] in ("pass", "warn", "fail")
            assert ISO.fullmatch(entry["time"])
            if entry["status"] == "pass":
                assert "output" not in entry
    db = doc["checks"]["db:responseTime"][0]
    assert db["componentType"] == "datastore"
    assert (db["observedValue"], db["observedUnit"]) == (10.0, "ms")
    assert db["recent"]["runs"] == 3
    assert doc["checks"]["cache:responseTime"][0]["output"] == "connection refused"
    assert doc["checks"]["cache:responseTime"][0]["critical"] is False
    assert doc["checks"]["uptime"][0]["observedValue"] == 12.5
    assert doc["checks"]["uptime"][0]["observedUnit"] == "s"


def test_pass_has_no_output_and_probes_have_no_score() -> None:
    """A passing document omits output; only the full report carries uptime and score."""
    doc = document(HealthReport("readiness", (result("db", Status.PASS),)), IDENTITY, details=True)
    assert "output" not in doc
    assert set(doc["checks"]) == {"db:responseTime"}


def test_score_formula() -> None:
    """100 - 60 per critical fail - 25 per other fail - 10 per warn - 5 per slow pass
    - 10 x recent fail share per check, clamped to 0-100."""
    assert score(HealthReport(None, ())) == 100
    assert score(HealthReport(None, (result("a", Status.PASS),))) == 100
    assert score(HealthReport(None, (result("a", Status.FAIL),))) == 40
    assert score(HealthReport(None, (result("a", Status.FAIL, critical=False),))) == 75
    assert score(HealthReport(None, (result("a", Status.WARN),))) == 90
    slow = result("a", Status.PASS, duration=1.5, timeout=2.0)
    assert score(HealthReport(None, (slow,))) == 95
    flaky = HealthReport(None, (result("a", Status.PASS),), {"a": Trend(10, 5, 0, 5, 1, 2)})
    assert score(flaky) == 95
    two = (result("a", Status.FAIL), result("b", Status.FAIL))
    assert score(HealthReport(None, two)) == 0
    doc = document(HealthReport(None, (result("a", Status.WARN),)), IDENTITY, details=True)
    assert doc["checks"]["score"] == [
        {
            "componentType": "system",
            "observedValue": 90,
            "observedUnit": "percent",
            "status": "warn",
            "time": doc["checks"]["score"][0]["time"],
        }
    ]
