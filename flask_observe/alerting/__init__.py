"""Alerting: channels, a router with dedup and cooldown, and in-process rules."""

from __future__ import annotations

# Importing it registers the ``alertmanager`` channel type.
from .alertmanager import AlertmanagerChannel
from .channels import Channel, DeliveryError, build_channels
from .model import SEVERITIES, Alert
from .router import AlertRouter
from .rules import (
    BreakerRule,
    CheckRule,
    DiskRule,
    ErrorRateRule,
    HealthRule,
    HttpWindow,
    LatencyRule,
    MemoryRule,
    RuleEngine,
    pybreaker_states,
)
from .store import MemoryStore, RedisStore
from .urls import UnsafeURLError, UrlPolicy

__all__ = [
    "SEVERITIES",
    "Alert",
    "AlertRouter",
    "AlertmanagerChannel",
    "BreakerRule",
    "Channel",
    "CheckRule",
    "DeliveryError",
    "DiskRule",
    "ErrorRateRule",
    "HealthRule",
    "HttpWindow",
    "LatencyRule",
    "MemoryRule",
    "MemoryStore",
    "RedisStore",
    "RuleEngine",
    "UnsafeURLError",
    "UrlPolicy",
    "build_channels",
    "pybreaker_states",
]
