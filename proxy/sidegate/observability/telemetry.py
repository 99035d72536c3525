"""The app's telemetry resources for its lifetime: tracing, the recorder and the spend log (and
the gauges that have a value before any request).

Started by the upstreams cleanup context after the fork (the span exporter's thread and the
spend writer's task belong to the worker), and closed after aiohttp has drained in-flight
requests, so the last spans and spend rows are flushed on a graceful shutdown.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sidegate.observability.access import AccessLog
from sidegate.observability.catalog import Catalog
from sidegate.observability.metrics import Metrics
from sidegate.observability.multiprocess import worker_exited
from sidegate.observability.recorder import Recorder
from sidegate.observability.tracing import NoTracing, Tracing
from sidegate.settings import Settings
from sidegate.spend import SpendSink, open_spend_log


@dataclass(frozen=True, slots=True)
class Telemetry:
    tracing: Tracing
    recorder: Recorder
    spend: SpendSink | None


@asynccontextmanager
async def telemetry(settings: Settings, metrics: Metrics) -> AsyncIterator[Telemetry]:
    catalog = Catalog.from_settings(settings)
    endpoint = settings.telemetry.otlp_endpoint
    otel = None
    if endpoint is not None:
        # Imported only when tracing is on: the SDK is not loaded at all otherwise.
        from sidegate.observability.otel import OtelTracing, build_provider

        otel = OtelTracing(build_provider(settings.telemetry, endpoint), catalog)
    tracing: Tracing = otel if otel is not None else NoTracing()
    show_full_budgets(settings, metrics)
    try:
        async with open_spend_log(settings.spend) as spend:
            yield Telemetry(tracing, Recorder(metrics, AccessLog(), catalog, spend), spend)
    finally:
        if otel is not None:
            await otel.close()
        worker_exited(os.getpid())


def show_full_budgets(settings: Settings, metrics: Metrics) -> None:
    """`llm_budget_remaining_usd` for every configured tenant whose plan has a daily budget,
    before its first request: the whole budget, as nothing is spent in a fresh memory ledger
    (the limits update it from then on). A shared ledger (`state.backend: redis`) may hold
    spend from before this process started, so there the gauge waits for the first answer."""
    if settings.state.backend != "memory":
        return
    left: dict[str, float] = {}
    for name, tenant in settings.tenants.items():
        plan = settings.plans.get(tenant.plan) if tenant.plan else None
        if plan is None or plan.daily_budget_usd is None:
            continue
        label = metrics.tenant(name)  # tenants sharing a label show the least left
        left[label] = min(plan.daily_budget_usd, left.get(label, plan.daily_budget_usd))
    for label, budget in left.items():
        metrics.budget_remaining.labels(label).set(budget)
