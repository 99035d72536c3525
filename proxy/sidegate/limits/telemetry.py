"""Metrics of limits beyond the contract's (`llm_rate_limited_total`, `llm_budget_remaining_usd`
live in `observability.metrics`): they are registered on the application's own registry, so each
app counts only itself, like every other metric."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True, slots=True)
class LimitMetrics:
    state_errors: Counter
    fallbacks: Counter
    budget_alerts: Counter


def build_limit_metrics(registry: CollectorRegistry) -> LimitMetrics:
    return LimitMetrics(
        state_errors=Counter(
            "llm_state_errors",
            "Calls to the shared state backend (Redis) that failed or timed out.",
            registry=registry,
        ),
        fallbacks=Counter(
            "llm_state_fallbacks",
            "Requests decided on this process's local limits because Redis was unreachable.",
            registry=registry,
        ),
        budget_alerts=Counter(
            "llm_budget_alerts",
            "Tenants crossing 80% of their daily budget (one per tenant per UTC day).",
            ("tenant",),
            registry=registry,
        ),
    )
