"""Semantic conventions: which attribute names the instrumentations write, and the resource
attributes that tell one host and one process from another.

**Attribute names.** The OpenTelemetry instrumentations still write the old, experimental
HTTP and database names (``http.method``, ``http.status_code``, ``db.statement``) unless
``OTEL_SEMCONV_STABILITY_OPT_IN`` asks for the stable ones. flask_observe asks for the stable
ones by default (``OBSERVE_TRACING_SEMCONV``: ``stable``; ``old`` for the names of before, or
``both`` while dashboards move), through the instrumentations' own switch: the same setting
as ``OTEL_SEMCONV_STABILITY_OPT_IN=http,database`` (``http/dup,database/dup`` for ``both``).
The switch is process-wide, read by each instrumentation when it is turned on; when the key
is not set and the variable is, the variable decides.

**Resource.** ``host.name``, ``process.pid`` and ``service.instance.id`` (a UUID per
process), ``container.id`` when the process runs in a container (with
``opentelemetry-resource-detector-containerid``) and ``k8s.pod.name`` / ``k8s.namespace.name``
in Kubernetes. ``OTEL_RESOURCE_ATTRIBUTES`` wins over all of them. After a fork (gunicorn
``--preload``) the child's own PID and instance ID replace the parent's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import _optional

__all__ = ["SEMCONV_CHOICES", "apply_semconv", "detected_resource", "semconv_choice"]

logger = logging.getLogger("flask_observe.tracing")

SEMCONV_CHOICES = ("stable", "old", "both")
#: The value of OTEL_SEMCONV_STABILITY_OPT_IN each choice stands for.
OPT_IN = {"stable": "http,database", "old": "", "both": "http/dup,database/dup"}
_VARIABLE = "OTEL_SEMCONV_STABILITY_OPT_IN"
_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def semconv_choice(setting: str | None, environ: Mapping[str, str]) -> str | None:
    """The configured choice; unset, ``None`` when ``OTEL_SEMCONV_STABILITY_OPT_IN`` is set
    (the instrumentations read it themselves), else ``stable``."""
    if setting is not None:
        return setting
    if environ.get(_VARIABLE, "").strip():
        return None
    return "stable"


def apply_semconv(choice: str | None) -> bool:
    """Set the instrumentations' process-wide switch (before they are turned on).

    :returns: whether it was set (``False``: this opentelemetry-instrumentation has no such
        switch, or ``choice`` is ``None`` and the variable decides).
    """
    try:
        from opentelemetry.instrumentation import _semconv
    except ImportError:
        return False
    stability = getattr(_semconv, "_OpenTelemetrySemanticConventionStability", None)
    signals = getattr(_semconv, "_OpenTelemetryStabilitySignalType", None)
    modes = getattr(_semconv, "_StabilityMode", None)
    if stability is None or signals is None or modes is None:
        logger.warning(
            "flask_observe: this opentelemetry-instrumentation has no semantic-convention"
            " switch; OBSERVE_TRACING_SEMCONV is not applied"
        )
        return False
    _names[0] = None
    with stability._lock:
        # Read the variable again (a previous app in this process may have set the switch).
        stability._initialized = False
    stability._initialize()
    if choice is None:
        return False
    wanted = {
        "stable": (modes.HTTP, modes.DATABASE),
        "old": (modes.DEFAULT, modes.DEFAULT),
        "both": (modes.HTTP_DUP, modes.DATABASE_DUP),
    }[choice]
    with stability._lock:
        mapping = stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING
        mapping[signals.HTTP], mapping[signals.DATABASE] = wanted
    return True


#: (stable names written, old names written), as the switch was last seen; None: not read.
_names: list[tuple[bool, bool] | None] = [None]


def names() -> tuple[bool, bool]:
    """Whether the instrumentations write the stable names now, and the old ones."""
    found = _names[0]
    if found is None:
        found = _names[0] = _read_names()
    return found


def _read_names() -> tuple[bool, bool]:
    try:
        from opentelemetry.instrumentation import _semconv
    except ImportError:
        return False, True
    try:
        stability = _semconv._OpenTelemetrySemanticConventionStability
        stability._initialize()  # type: ignore[no-untyped-call]
        mode = stability._get_opentelemetry_stability_opt_in_mode(
            _semconv._OpenTelemetryStabilitySignalType.DATABASE
        )
        return bool(_semconv._report_new(mode)), bool(_semconv._report_old(mode))
    except AttributeError:
        return False, True


# -- the resource --------------------------------------------------------------------------

#: This process's service.instance.id and the PID it was made in (a fork makes a new one).
_instance: list[Any] = [None, 0]


def instance_id() -> str:
    """A UUID for this process, made again in a forked child."""
    pid = os.getpid()
    if _instance[0] is None or _instance[1] != pid:
        _instance[0], _instance[1] = str(uuid.uuid4()), pid
    return str(_instance[0])


def process_attributes() -> dict[str, Any]:
    """What differs from one process to the next: its PID and instance ID."""
    return {"process.pid": os.getpid(), "service.instance.id": instance_id()}


def detected_resource(environ: Mapping[str, str]) -> dict[str, Any]:
    """host.name, process.pid, service.instance.id; container.id and k8s.* where found."""
    attributes: dict[str, Any] = {"host.name": socket.gethostname(), **process_attributes()}
    container = _optional.detect(
        "opentelemetry.resource.detector.containerid", "the container.id resource attribute"
    )
    if container is not None:
        try:
            found = container.ContainerResourceDetector().detect().attributes
            if found.get("container.id"):
                attributes["container.id"] = str(found["container.id"])
        except Exception:
            logger.debug("flask_observe: container.id not detected", exc_info=True)
    if environ.get("KUBERNETES_SERVICE_HOST"):
        # A pod's host name is its name unless the pod spec sets another.
        attributes["k8s.pod.name"] = environ.get("HOSTNAME") or attributes["host.name"]
        with contextlib.suppress(OSError):
            attributes["k8s.namespace.name"] = _SERVICE_ACCOUNT.read_text().strip()
    return attributes
