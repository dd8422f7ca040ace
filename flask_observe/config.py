"""Configuration: every ``OBSERVE_*`` key, its default, and its validation, in one place.

Keys are read once, in :meth:`Observe.init_app`, into a frozen :class:`ObserveConfig`.
Values may come from ``app.config`` (set in code or through Flask's
``app.config.from_prefixed_env()``, i.e. ``FLASK_OBSERVE_*`` environment variables, which Flask
parses as JSON when it can) or from keyword options given to ``Observe(...)``, which act as
defaults that ``app.config`` overrides.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConfigError", "ObserveConfig", "config_keys"]

PREFIX = "OBSERVE_"

#: Characters accepted in an incoming request ID, and its length bounds (see docs/correlation.md).
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:@+=-]"
MAX_REQUEST_ID_LENGTH_LIMIT = 1024

LOG_FORMATS = ("json", "console")
_LEVEL_NAMES = frozenset(("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"))
ROTATE_INTERVALS = ("hourly", "daily")
TRACING_EXPORTERS = ("otlp-grpc", "otlp-http", "console", "none")
TRACING_INSTRUMENTATIONS = ("flask", "requests", "sqlalchemy", "celery", "redis")
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Log viewer: JSON keys whose values are hidden at read time (searched, case-insensitive).
DEFAULT_REDACT_KEYS = (
    r"passw(or)?d|^pass$|secret|token|api[-_]?key|authorization|cookie|credential|private[-_]?key",
)
#: Log viewer: values hidden at read time wherever they appear; group 1 (if any) is what is
#: replaced, else the whole match.
DEFAULT_REDACT_PATTERNS = (
    r"(?i)\b(?:bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,})",
    r"://[^/\s:@]+:([^/\s@]+)@",
    r"(?i)(?:password|passwd|pwd|secret|token|api[-_]?key|access[-_]?key)[\"']?\s*[=:]\s*[\"']?"
    r"([^\s&,;\"'\\]+)",
    r"\b(AKIA[0-9A-Z]{16})\b",
    r"\b(eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})",
)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and what it expects."""


@dataclass(frozen=True)
class ObserveConfig:
    """The validated settings of one app. Field ``x`` is config key ``OBSERVE_X``."""

    #: Master switch: ``False`` turns every feature off.
    enabled: bool = True
    #: ``service`` field of every log line; defaults to the Flask app's name.
    service_name: str | None = None
    service_version: str | None = None
    environment: str | None = None

    # -- correlation IDs ------------------------------------------------------------------
    correlation_enabled: bool = True
    #: Header read from requests and echoed on every response.
    request_id_header: str = "X-Request-ID"
    #: Other incoming headers accepted when the main one is absent.
    request_id_fallback_headers: tuple[str, ...] = ("X-Correlation-ID",)
    #: Accept valid incoming IDs; ``False`` always generates a fresh one.
    request_id_trust_incoming: bool = True
    request_id_max_length: int = 128
    #: Outgoing ``requests`` calls carry the ID only to these hosts (``host``, ``host:port``,
    #: ``*.domain``). Empty: to no host.
    propagate_hosts: tuple[str, ...] = ()
    #: Celery task headers carry the ID; ``None``: on when Celery is installed.
    celery_enabled: bool | None = None

    # -- logging --------------------------------------------------------------------------
    logging_enabled: bool = True
    log_level: str = "INFO"
    log_format: str = "json"
    log_stdout: bool = True
    log_dir: str | None = None
    log_file_name: str = "app.log"
    #: Rotate the active file when it reaches this size; 0 turns size rotation off.
    log_rotate_bytes: int = 10 * 1024 * 1024
    #: Rotate at the start of each UTC hour or day; ``None`` turns time rotation off.
    log_rotate_interval: str | None = None
    log_compress: bool = True
    #: Retention of rotated files; 0 means no limit of that kind.
    log_retention_days: float = 14.0
    log_retention_files: int = 50
    log_retention_bytes: int = 1024 * 1024 * 1024
    #: Per-logger levels, e.g. ``{"sqlalchemy.engine": "WARNING"}``.
    log_levels: Mapping[str, str] = field(default_factory=dict)

    # -- access log -----------------------------------------------------------------------
    access_log: bool = True
    #: The client address is personal data: off unless asked for.
    access_log_remote_addr: bool = False
    #: Regular expressions searched in the request path; matching requests are left out of the
    #: access log, tracing and metrics. ``None``: the health endpoints under
    #: ``OBSERVE_HEALTH_URL_PREFIX`` (probes and the full report) and ``OBSERVE_METRICS_PATH``.
    excluded_paths: tuple[str, ...] | None = None

    # -- tracing (OpenTelemetry, docs/tracing.md) -----------------------------------------
    #: ``None``: on when an OTLP endpoint is configured (``OBSERVE_TRACING_ENDPOINT``,
    #: ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or an
    #: exporter other than ``none`` is named.
    tracing_enabled: bool | None = None
    #: ``otlp-grpc``, ``otlp-http``, ``console`` or ``none``; ``None``: OTLP when an endpoint
    #: is configured (over ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``, gRPC by default), else none.
    tracing_exporter: str | None = None
    #: Collector address; ``None`` leaves it to ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``.
    tracing_endpoint: str | None = None
    #: Share of new traces recorded (parent-based: a request whose caller sampled is
    #: recorded); ``None`` leaves it to ``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``.
    tracing_sample_rate: float | None = None
    #: Libraries traced when installed.
    tracing_instrumentations: tuple[str, ...] = TRACING_INSTRUMENTATIONS
    #: Record client spans (SQL, HTTP, Redis) that have no parent span (start-up queries,
    #: broker polling); off by default, they make one trace each.
    tracing_root_client_spans: bool = False
    #: Remove query strings and the client's address from span attributes before export.
    tracing_redact: bool = True
    #: Add a ``traceresponse`` header (W3C Trace Context level 2) to every traced response.
    tracing_response_header: bool = False
    #: Longest wait for queued spans at shutdown and process exit, in seconds.
    tracing_shutdown_timeout: float = 2.0

    # -- error reporting (Sentry, docs/errors.md) -----------------------------------------
    #: ``None``: on when ``OBSERVE_SENTRY_DSN`` or ``SENTRY_DSN`` is set.
    sentry_enabled: bool | None = None
    #: Never logged or shown; ``None`` leaves it to ``SENTRY_DSN``.
    sentry_dsn: str | None = field(default=None, repr=False)
    #: Send the client's address (personal data) as the event's user IP.
    sentry_send_client_ip: bool = False
    #: Longest wait for queued events at shutdown and process exit, in seconds.
    sentry_shutdown_timeout: float = 2.0

    # -- access to sensitive endpoints (health details, log viewer, /metrics if asked) ----
    #: Bearer token (at least 16 characters) that grants access. Never logged or shown.
    auth_token: str | None = field(default=None, repr=False)
    #: ``callable(request) -> bool`` (or ``"module:attr"`` naming one) deciding access; when
    #: set it is asked instead of comparing the token.
    auth_callback: Callable[[Any], bool] | None = None

    # -- metrics (docs/metrics.md) --------------------------------------------------------
    #: ``/metrics`` and the RED metrics; ``None``: on when ``prometheus_client`` is installed.
    metrics_enabled: bool | None = None
    metrics_path: str = "/metrics"
    #: Put ``/metrics`` behind the shared auth (``OBSERVE_AUTH_TOKEN``/``_CALLBACK``).
    metrics_auth: bool = False
    #: Upper bounds (seconds) of the request duration histogram's buckets.
    metrics_buckets: tuple[float, ...] = DEFAULT_BUCKETS
    #: Trace IDs as exemplars on the duration histogram (OpenMetrics scrapes, tracing on).
    metrics_exemplars: bool = True
    #: Period of the background sampler: memory, error budgets, in-process alert rules.
    sample_interval_seconds: float = 15.0

    # -- SLOs (docs/slo.md) ---------------------------------------------------------------
    #: Share of requests that must not answer 5xx (0 turns the availability SLO off).
    slo_availability: float = 0.999
    #: Share of requests that must be faster than ``slo_latency_seconds`` (0: off).
    slo_latency: float = 0.99
    #: Latency threshold of the latency SLO; must be one of ``metrics_buckets``.
    slo_latency_seconds: float = 0.5
    #: Health warns when less than this share of an error budget is left.
    slo_budget_warn: float = 0.1

    # -- diagnostics (docs/metrics.md#diagnostics) ---------------------------------------
    #: SQLAlchemy query timing and per-request query counts; ``None``: on when SQLAlchemy is
    #: installed (and metrics are on).
    diagnostics_sql: bool | None = None
    slow_query_ms: float = 500.0
    #: Process RSS gauge and growth rate (needs psutil); ``None``: on when psutil is installed.
    diagnostics_memory: bool | None = None
    #: Window over which memory growth is measured.
    memory_window_seconds: float = 3600.0
    #: Growth (MB/hour over the window) that counts as a leak; 0: never.
    memory_growth_mb_per_hour: float = 100.0
    #: When growth crosses the threshold, log the top allocation differences (tracemalloc;
    #: costs CPU and memory while on, so off by default).
    memory_tracemalloc: bool = False
    memory_tracemalloc_top: int = 10

    # -- alerting (docs/alerting.md) -----------------------------------------------------
    #: Channels, each ``{"type": "slack"|"discord"|"pagerduty"|"email"|"webhook", ...}``;
    #: alerting is on when any is configured. Holds webhook URLs and keys: never shown.
    alert_channels: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    #: Plain ``http://`` webhook URLs are refused unless this is on.
    alert_allow_http: bool = False
    #: Hosts, addresses or networks (CIDR) webhooks may reach although they are loopback,
    #: private or link-local.
    alert_allow_hosts: tuple[str, ...] = ()
    #: Redis URL for state shared by every instance (dedup, cooldown, incidents).
    alert_redis_url: str | None = field(default=None, repr=False)
    alert_redis_prefix: str = "flask_observe:alerts"
    #: The same alert (fingerprint and status) is notified at most once per window.
    alert_dedup_seconds: float = 3600.0
    #: Minimum time between two firing notifications of one alert name.
    alert_cooldown_seconds: float = 300.0
    alert_queue_size: int = 1000
    alert_timeout_seconds: float = 5.0
    #: In-process rules; failing evaluations in a row before one fires.
    alert_rules_enabled: bool = True
    alert_rules_consecutive: int = 3
    alert_error_rate: float = 0.05
    alert_error_rate_window_seconds: float = 300.0
    alert_latency_seconds: float = 2.0
    #: Process RSS above this (MB) alerts; 0: never.
    alert_memory_mb: float = 0.0
    #: Free space of ``alert_disk_path`` below this share alerts; 0: never.
    alert_disk_free: float = 0.05
    alert_disk_path: str = "/"
    # -- health (docs/health.md) ----------------------------------------------------------
    health_enabled: bool = True
    #: Where the health blueprint is mounted: ``<prefix>``, ``<prefix>/live``, ``/ready``,
    #: ``/startup``.
    health_url_prefix: str = "/health"
    #: Seconds a check's result is reused before the check runs again.
    health_cache_ttl: float = 3.0
    #: Deadline of a check that does not set its own ``timeout``, in seconds.
    health_default_timeout: float = 2.0
    #: Readiness and startup answer ``fail`` until the host calls
    #: ``observe.startup_complete(app)``.
    health_wait_for_startup: bool = False
    #: Show the checks' details to everyone, not only to authorised callers.
    health_public_details: bool = False
    #: ``releaseId`` of the health document; ``None``: the service version.
    health_release_id: str | None = None
    #: ``description`` of the health document; ``None``: "health of <service>".
    health_description: str | None = None

    # -- log viewer (docs/logviewer.md) -----------------------------------------------------
    #: Serve the log viewer (API and page). Needs OBSERVE_AUTH_TOKEN or OBSERVE_AUTH_CALLBACK.
    logviewer_enabled: bool = False
    #: URL prefix of the JSON API: ``<prefix>/files``, ``<prefix>/search``, ``<prefix>/tail/…``.
    logviewer_api_prefix: str = "/api/logs"
    #: URL of the browser page; its assets and sign-in are served under it.
    logviewer_ui_path: str = "/observe/logs"
    #: Directory read; ``None``: ``OBSERVE_LOG_DIR``.
    logviewer_dir: str | None = None
    #: Active file names shown with their rotated files; empty: ``OBSERVE_LOG_FILE_NAME``.
    logviewer_files: tuple[str, ...] = ()
    #: Largest ``limit`` a search or tail may ask for.
    logviewer_max_results: int = 1000
    #: A page stops (with a cursor) before its lines would exceed this many bytes.
    logviewer_max_response_bytes: int = 4 * 1024 * 1024
    #: Seconds a search may scan before it answers with what it has and a cursor.
    logviewer_time_budget: float = 2.0
    logviewer_max_pattern_length: int = 256
    #: Searches and tails running at once (more: 429).
    logviewer_max_concurrent: int = 4
    #: Live tails (server-sent event streams) open at once (more: 429).
    logviewer_max_followers: int = 8
    #: A live tail ends after this many seconds (the page reconnects).
    logviewer_follow_seconds: float = 3600.0
    #: Hide secret-looking values in what the viewer returns.
    logviewer_redact: bool = True
    logviewer_redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS
    logviewer_redact_patterns: tuple[str, ...] = DEFAULT_REDACT_PATTERNS
    #: Link to a trace, e.g. ``http://127.0.0.1:16686/trace/{trace_id}`` (Jaeger).
    logviewer_trace_url: str | None = None
    #: Lifetime of the page's sign-in cookie.
    logviewer_session_seconds: int = 3600


def config_keys() -> dict[str, Any]:
    """Every ``OBSERVE_*`` key with its default value."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(ObserveConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out[PREFIX + f.name.upper()] = default
    return out


# -- parsing ------------------------------------------------------------------------------
# Values may arrive as Python objects (set in code) or as strings (environment variables
# Flask could not parse as JSON). Each parser accepts both and raises ValueError with what it
# expects.


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
    raise ValueError("expected a boolean (true/false)")


def _opt_bool(value: Any) -> bool | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    return _bool(value)


def _int(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError("expected an integer") from None
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise ValueError(f"expected an integer >= {minimum}{upper}")
        return number

    return parse


def _float(minimum: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError("expected a number") from None
        if number < minimum or number != number:
            raise ValueError(f"expected a number >= {minimum}")
        return number

    return parse


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def _opt_str(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _str(value)


def _choice(*choices: str, optional: bool = False) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        if optional and (value is None or value == ""):
            return None
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"expected one of {allowed}" + (" or None" if optional else ""))

    return parse


def _str_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError("expected a list of strings or a comma-separated string") from None
        else:
            value = text.split(",")
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise ValueError("expected a list of strings or a comma-separated string")


def _level(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        name = logging.getLevelName(value)
        if isinstance(name, str) and not name.startswith("Level "):
            return name
    if isinstance(value, str) and value.strip().upper() in _LEVEL_NAMES:
        return value.strip().upper()
    raise ValueError("expected a log level name (DEBUG, INFO, WARNING, ERROR, CRITICAL)")


def _level_map(value: Any) -> Mapping[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError("expected a mapping of logger name to level") from None
        else:
            pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("expected 'logger=LEVEL,other=LEVEL' or a JSON object")
            value = {k.strip(): v for k, v in pairs}
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping of logger name to level")
    return {str(k): _level(v) for k, v in value.items()}


def _patterns(value: Any) -> tuple[str, ...]:
    patterns = _str_tuple(value)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return patterns


def _opt_patterns(value: Any) -> tuple[str, ...] | None:
    return None if value is None else _patterns(value)


def default_exclusions(config: ObserveConfig) -> tuple[str, ...]:
    """The paths left out of access log, traces and metrics unless configured otherwise:
    the health endpoints (probes polled every few seconds; the full report is for people and
    must not count against the SLO when it answers 503) and the metrics endpoint."""
    health = re.escape(config.health_url_prefix)
    return (
        rf"^{health}(/(live|ready|startup))?/?$",
        rf"^{re.escape(config.metrics_path)}$",
    )


def _header(value: Any) -> str:
    name = _str(value)
    if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
        raise ValueError("expected an HTTP header name")
    return name


def _headers(value: Any) -> tuple[str, ...]:
    return tuple(_header(v) for v in _str_tuple(value))


def _secret(minimum: int) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value.strip()) < minimum:
            raise ValueError(f"expected a string of at least {minimum} characters")
        return value.strip()

    return parse


def _callable(value: Any) -> Callable[..., Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        module_name, _, attr = value.partition(":")
        if not module_name or not attr:
            raise ValueError("expected a callable or a 'module:attribute' import string")
        try:
            value = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import {module_name}:{attr} ({exc})") from None
    if not callable(value):
        raise ValueError("expected a callable or a 'module:attribute' import string")
    return value  # type: ignore[no-any-return]


def _trace_url(value: Any) -> str | None:
    url = _opt_str(value)
    if url is None:
        return None
    if not re.match(r"https?://", url) or "{trace_id}" not in url:
        raise ValueError("expected an http(s) URL containing '{trace_id}'")
    return url


def _file_names(value: Any) -> tuple[str, ...]:
    return tuple(_file_name(v) for v in _str_tuple(value))


def _file_name(value: Any) -> str:
    name = _str(value)
    if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise ValueError("expected a plain file name (no directories)")
    return name


def _opt_ratio(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    number = _float(0.0)(value)
    if number > 1.0:
        raise ValueError("expected a number from 0 to 1")
    return number


def _subset(allowed: tuple[str, ...]) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        names = tuple(v.lower() for v in _str_tuple(value))
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise ValueError(f"unknown name(s) {', '.join(unknown)}; known: {', '.join(allowed)}")
        return tuple(dict.fromkeys(names))

    return parse


_DSN = re.compile(r"https?://[^\s/@]+@[^\s/]+/\S+")


def _dsn(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _DSN.fullmatch(value.strip()):
        raise ValueError("expected a Sentry DSN (https://<key>@<host>/<project id>)")
    return value.strip()


def _path(value: Any) -> str:
    path = _str(value)
    if not path.startswith("/") or any(c in path for c in "<>?#"):
        raise ValueError("expected a URL path starting with '/'")
    return path


def _buckets(value: Any) -> tuple[float, ...]:
    if isinstance(value, str):
        value = _str_tuple(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("expected a list of increasing positive numbers")
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError("expected a list of increasing positive numbers") from None
    if any(n <= 0 or n != n for n in numbers) or list(numbers) != sorted(set(numbers)):
        raise ValueError("expected a list of increasing positive numbers")
    return numbers


def _ratio(value: Any) -> float:
    number = _float(0.0)(value)
    if number >= 1.0:
        raise ValueError("expected a number >= 0 and < 1")
    return number


def _channels(value: Any) -> tuple[Mapping[str, Any], ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("expected a JSON list of channel objects") from None
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, Mapping) for v in value):
        raise ValueError("expected a list of channel objects")
    # Validated in depth (URL safety, required fields) by the alerting setup.
    return tuple(dict(v) for v in value)


def _url_prefix(value: Any) -> str:
    prefix = _str(value).rstrip("/")
    if not prefix.startswith("/") or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", prefix):
        raise ValueError("expected a URL path such as '/health' (letters, digits, '.', '_', '-')")
    return prefix


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "enabled": _bool,
    "service_name": _opt_str,
    "service_version": _opt_str,
    "environment": _opt_str,
    "correlation_enabled": _bool,
    "request_id_header": _header,
    "request_id_fallback_headers": _headers,
    "request_id_trust_incoming": _bool,
    "request_id_max_length": _int(8, MAX_REQUEST_ID_LENGTH_LIMIT),
    "propagate_hosts": _str_tuple,
    "celery_enabled": _opt_bool,
    "logging_enabled": _bool,
    "log_level": _level,
    "log_format": _choice(*LOG_FORMATS),
    "log_stdout": _bool,
    "log_dir": _opt_str,
    "log_file_name": _file_name,
    "log_rotate_bytes": _int(0),
    "log_rotate_interval": _choice(*ROTATE_INTERVALS, optional=True),
    "log_compress": _bool,
    "log_retention_days": _float(0.0),
    "log_retention_files": _int(0),
    "log_retention_bytes": _int(0),
    "log_levels": _level_map,
    "access_log": _bool,
    "access_log_remote_addr": _bool,
    "excluded_paths": _opt_patterns,
    "tracing_enabled": _opt_bool,
    "tracing_exporter": _choice(*TRACING_EXPORTERS, optional=True),
    "tracing_endpoint": _opt_str,
    "tracing_sample_rate": _opt_ratio,
    "tracing_instrumentations": _subset(TRACING_INSTRUMENTATIONS),
    "tracing_root_client_spans": _bool,
    "tracing_redact": _bool,
    "tracing_response_header": _bool,
    "tracing_shutdown_timeout": _float(0.0),
    "sentry_enabled": _opt_bool,
    "sentry_dsn": _dsn,
    "sentry_send_client_ip": _bool,
    "sentry_shutdown_timeout": _float(0.0),
    "auth_token": _secret(16),
    "auth_callback": _callable,
    "metrics_enabled": _opt_bool,
    "metrics_path": _path,
    "metrics_auth": _bool,
    "metrics_buckets": _buckets,
    "metrics_exemplars": _bool,
    "sample_interval_seconds": _float(0.05),
    "slo_availability": _ratio,
    "slo_latency": _ratio,
    "slo_latency_seconds": _float(0.0),
    "slo_budget_warn": _ratio,
    "diagnostics_sql": _opt_bool,
    "slow_query_ms": _float(0.0),
    "diagnostics_memory": _opt_bool,
    "memory_window_seconds": _float(1.0),
    "memory_growth_mb_per_hour": _float(0.0),
    "memory_tracemalloc": _bool,
    "memory_tracemalloc_top": _int(1, 1000),
    "alert_channels": _channels,
    "alert_allow_http": _bool,
    "alert_allow_hosts": _str_tuple,
    "alert_redis_url": _opt_str,
    "alert_redis_prefix": _str,
    "alert_dedup_seconds": _float(0.0),
    "alert_cooldown_seconds": _float(0.0),
    "alert_queue_size": _int(1),
    "alert_timeout_seconds": _float(0.1),
    "alert_rules_enabled": _bool,
    "alert_rules_consecutive": _int(1),
    "alert_error_rate": _ratio,
    "alert_error_rate_window_seconds": _float(1.0),
    "alert_latency_seconds": _float(0.0),
    "alert_memory_mb": _float(0.0),
    "alert_disk_free": _ratio,
    "alert_disk_path": _str,
    "health_enabled": _bool,
    "health_url_prefix": _url_prefix,
    "health_cache_ttl": _float(0.0),
    "health_default_timeout": _float(0.05),
    "health_wait_for_startup": _bool,
    "health_public_details": _bool,
    "health_release_id": _opt_str,
    "health_description": _opt_str,
    "logviewer_enabled": _bool,
    "logviewer_api_prefix": _url_prefix,
    "logviewer_ui_path": _url_prefix,
    "logviewer_dir": _opt_str,
    "logviewer_files": _file_names,
    "logviewer_max_results": _int(1, 100_000),
    "logviewer_max_response_bytes": _int(64 * 1024),
    "logviewer_time_budget": _float(0.05),
    "logviewer_max_pattern_length": _int(1, 4096),
    "logviewer_max_concurrent": _int(1),
    "logviewer_max_followers": _int(0),
    "logviewer_follow_seconds": _float(1.0),
    "logviewer_redact": _bool,
    "logviewer_redact_keys": _patterns,
    "logviewer_redact_patterns": _patterns,
    "logviewer_trace_url": _trace_url,
    "logviewer_session_seconds": _int(60),
}

#: Keys whose values are never echoed (errors, ``flask observe config``).
SECRET_KEYS = frozenset({"auth_token", "sentry_dsn", "alert_channels", "alert_redis_url"})


def option_names() -> frozenset[str]:
    """Names accepted as keyword options of ``Observe(...)``."""
    return frozenset(_PARSERS)


def load_config(app_config: Mapping[str, Any], options: Mapping[str, Any]) -> ObserveConfig:
    """Validate the ``OBSERVE_*`` keys of ``app_config`` (``options`` fill in missing ones).

    :raises ConfigError: naming the first invalid key and what it expects.
    """
    values: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        key = PREFIX + name.upper()
        if key in app_config:
            raw = app_config[key]
        elif name in options:
            raw = options[name]
        else:
            continue
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            shown = "<hidden>" if name in SECRET_KEYS else repr(raw)
            raise ConfigError(f"{key}: {exc}, got {shown}") from None
    unknown = sorted(
        k for k in app_config if k.startswith(PREFIX) and k[len(PREFIX) :].lower() not in _PARSERS
    )
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown flask_observe setting (see docs/configuration.md for the keys)"
        )
    config = ObserveConfig(**values)
    if config.excluded_paths is None:
        config = dataclasses.replace(config, excluded_paths=default_exclusions(config))
    if config.slo_latency and config.slo_latency_seconds not in config.metrics_buckets:
        raise ConfigError(
            f"OBSERVE_SLO_LATENCY_SECONDS: expected one of OBSERVE_METRICS_BUCKETS"
            f" {list(config.metrics_buckets)}, got {config.slo_latency_seconds!r}"
        )
    return config
