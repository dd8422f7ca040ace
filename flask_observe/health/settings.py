"""Keys of the health feature (docs/health.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import boolean, key, number, opt_text, url_prefix


@dataclass(frozen=True)
class HealthSettings:
    """Keys of the health feature (docs/health.md)."""

    health_enabled: bool = key(True, boolean)
    #: Where the health blueprint is mounted: ``<prefix>``, ``<prefix>/live``, ``/ready``,
    #: ``/startup``.
    health_url_prefix: str = key("/health", url_prefix)
    #: Seconds a check's result is reused before the check runs again.
    health_cache_ttl: float = key(3.0, number(0.0))
    #: Deadline of a check that does not set its own ``timeout``, in seconds.
    health_default_timeout: float = key(2.0, number(0.05))
    #: Readiness and startup answer ``fail`` until the host calls
    #: ``observe.startup_complete(app)``.
    health_wait_for_startup: bool = key(False, boolean)
    #: Show the checks' details to everyone, not only to authorised callers.
    health_public_details: bool = key(False, boolean)
    #: ``releaseId`` of the health document; ``None``: the service version.
    health_release_id: str | None = key(None, opt_text)
    #: ``description`` of the health document; ``None``: "health of <service>".
    health_description: str | None = key(None, opt_text)
