"""Tenants' limits and budgets, held exactly across every replica.

`build_admission(settings, metrics)` gives the `Admission` seam of the pipeline:
- `state.backend: memory` (the default): this process's memory (`limits.memory`);
- `state.backend: redis`: one Lua script per admission in a shared Redis (`limits.redis_state`),
  falling back to local limits while Redis is unreachable when `fail_open` (`limits.failover`).

Workers (`sidegate serve --workers N`): each worker is a separate process, so with the memory
backend each would hold its own buckets and the real limit would be limit x N. Rather than a
shared-memory table between forked workers, `workers_problem` makes start-up refuse N > 1 while
anything is limited (a plan, JWT plans, an operator block list) on the memory backend: with
`state.backend: redis` the workers share the same Redis keys as every other replica, so N
workers on one host are simply N more replicas and the limits hold exactly.
"""

from __future__ import annotations

from aiohttp import web

from sidegate.limits.failover import Direct, Failover, StateClient
from sidegate.limits.gate import LimitAdmission
from sidegate.limits.memory import MemoryState
from sidegate.limits.policy import limited
from sidegate.limits.telemetry import build_limit_metrics
from sidegate.observability.metrics import Metrics
from sidegate.settings import Settings

__all__ = ["LIMITS_KEY", "LimitAdmission", "build_admission", "workers_problem"]

LIMITS_KEY = web.AppKey("limits", LimitAdmission)


def build_admission(settings: Settings, metrics: Metrics) -> LimitAdmission:
    """The admission seam for `settings`; builds no connection until the first request."""
    client: StateClient
    limit_metrics = build_limit_metrics(metrics.registry)
    if settings.state.backend == "redis":
        from sidegate.limits.redis_state import RedisState

        state = settings.state
        client = Failover(RedisState(state), state.fail_open, limit_metrics)
    else:
        client = Direct(MemoryState())
    return LimitAdmission(client, metrics, limit_metrics, blocking=bool(settings.admin.token))


def _limits_anything(settings: Settings) -> bool:
    if settings.admin.token:
        return True
    if settings.auth_mode == "jwt" and any(limited(p) for p in settings.plans.values()):
        return True
    for tenant in settings.tenants.values():
        if tenant.plan is not None and limited(settings.plans.get(tenant.plan)):
            return True
    return False


def workers_problem(settings: Settings) -> str | None:
    """Why `settings` cannot run with its number of workers, or None when it can."""
    if settings.server.workers > 1 and settings.state.backend == "memory":
        if _limits_anything(settings):
            return (
                f"server.workers: {settings.server.workers} workers with state.backend: memory "
                "would each hold their own limits (limit x workers); use state.backend: redis "
                "or one worker"
            )
    return None
