"""Service level objectives: error budgets from the RED metrics (docs/slo.md)."""

from __future__ import annotations

from .budgets import ErrorBudgets

__all__ = ["ErrorBudgets"]
