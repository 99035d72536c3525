"""The in-process state backend: every limit of every tenant in this process's memory.

This is the default (`state.backend: memory`) and the local fallback of the Redis backend. It is
exact for one process: `sidegate serve --workers N` with N > 1 is refused at start-up while
limits use this backend (see `limits.workers_problem`): each worker would hold its own copy,
and the real limit would become limit x N.

Everything runs on the event loop thread between two awaits, so a check-then-charge is atomic
without a lock; concurrency slots need no lease because `settle` always runs in this process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sidegate.limits.model import (
    DAY_MS,
    Acquire,
    Bucket,
    Decision,
    Level,
    Release,
    TenantState,
    refill_ms,
)


@dataclass(slots=True)
class _Tenant:
    levels: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (level, at_ms)
    slots: dict[str, set[str]] = field(default_factory=dict)
    day: int = -1
    spent_usd: float = 0.0
    tokens: int = 0
    blocked: bool = False

    def roll(self, day: int) -> None:
        if day != self.day:
            self.day, self.spent_usd, self.tokens = day, 0.0, 0


def _now_ms() -> float:
    return time.time() * 1000.0


class MemoryState:
    """Token buckets, concurrency slots, daily spend and the block list, per tenant."""

    def __init__(self) -> None:
        self._tenants: dict[str, _Tenant] = {}

    def _tenant(self, name: str, now: float) -> _Tenant:
        tenant = self._tenants.get(name)
        if tenant is None:
            tenant = self._tenants[name] = _Tenant()
        tenant.roll(int(now // DAY_MS))
        return tenant

    @staticmethod
    def _level(tenant: _Tenant, bucket: Bucket, now: float) -> float:
        found = tenant.levels.get(bucket.key)
        if found is None:
            return bucket.capacity
        level, at = found
        return min(bucket.capacity, level + max(0.0, now - at) * bucket.rate_per_ms)

    async def acquire(self, request: Acquire) -> Decision:
        return self.acquire_now(request)

    def acquire_now(self, request: Acquire) -> Decision:
        now = _now_ms()
        tenant = self._tenant(request.tenant, now)
        spent = tenant.spent_usd
        if tenant.blocked:
            return Decision("blocked", 0, spent)
        if request.budget_usd is not None and spent >= request.budget_usd:
            return Decision("budget", _ms_to_midnight(now), spent)
        after: list[float] = []
        for index, bucket in enumerate(request.buckets):
            level = self._level(tenant, bucket, now)
            if level < bucket.cost:
                wait = refill_ms(bucket.cost, level, bucket.rate_per_ms)
                return Decision(bucket.kind, wait, spent, refused_index=index)
            after.append(level - bucket.cost)
        for index, slot in enumerate(request.slots):
            if len(tenant.slots.get(slot.key, ())) >= slot.limit:
                return Decision(
                    "concurrency", 1000, spent, refused_index=len(request.buckets) + index
                )
        levels = []
        for bucket, level in zip(request.buckets, after, strict=True):
            tenant.levels[bucket.key] = (level, now)
            levels.append(Level(level, refill_ms(bucket.capacity, level, bucket.rate_per_ms)))
        for slot in request.slots:
            tenant.slots.setdefault(slot.key, set()).add(request.request_id)
        tenant.tokens += request.reserved_tokens
        return Decision(None, 0, spent, tuple(levels))

    async def release(self, release: Release) -> float:
        return self.release_now(release)

    def release_now(self, release: Release) -> float:
        now = _now_ms()
        tenant = self._tenant(release.tenant, now)
        for bucket in release.buckets:
            if bucket.cost:
                level = self._level(tenant, bucket, now) - bucket.cost
                tenant.levels[bucket.key] = (min(bucket.capacity, level), now)
        for slot in release.slots:
            held = tenant.slots.get(slot.key)
            if held is not None:
                held.discard(release.request_id)
        tenant.spent_usd += release.cost_usd
        tenant.tokens += release.token_delta
        return tenant.spent_usd

    async def set_blocked(self, tenant: str, blocked: bool) -> None:
        self._tenant(tenant, _now_ms()).blocked = blocked

    async def state(self, tenant: str) -> TenantState:
        found = self._tenant(tenant, _now_ms())
        return TenantState(tenant, found.blocked, found.spent_usd, found.tokens)

    async def close(self) -> None:
        return None


def _ms_to_midnight(now_ms: float) -> int:
    return int(DAY_MS - now_ms % DAY_MS)
