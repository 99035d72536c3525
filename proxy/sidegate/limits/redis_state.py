"""The Redis state backend: limits and budgets shared by every replica (`state.backend: redis`).

One admission is one round trip: a single Lua script (`limits.scripts.ADMIT`, sent as EVALSHA)
checks the block list, the daily budget, every token bucket and every concurrency slot of the
request and charges all of them or none. Settling is a second script run after the answer.
Concurrency slots are leases (`LEASE_MS`) so a replica that dies mid-request cannot hold a
tenant's slots for ever. Errors reaching Redis surface as `StateUnavailable`; `limits.failover`
decides what to do with them.
"""

from __future__ import annotations

from typing import Any, Final

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from sidegate.limits.model import (
    Acquire,
    Decision,
    Level,
    Refusal,
    Release,
    StateUnavailable,
    TenantState,
)
from sidegate.limits.scripts import ADMIT, SETTLE, STATE
from sidegate.settings import StateSettings

LEASE_MS: Final = 15 * 60 * 1000  # longer than any stream we expect to relay
_REFUSALS: Final[dict[str, Refusal]] = {"blocked": "blocked", "budget": "budget"}


def _prefix(tenant: str) -> str:
    return f"sidegate:{{{tenant}}}:"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisState:
    def __init__(self, settings: StateSettings) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.url,
            max_connections=settings.pool_size,
            timeout=settings.timeout_seconds,
            socket_timeout=settings.timeout_seconds,
            socket_connect_timeout=settings.timeout_seconds,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._admit = self._redis.register_script(ADMIT)
        self._settle = self._redis.register_script(SETTLE)
        self._state = self._redis.register_script(STATE)

    async def acquire(self, request: Acquire) -> Decision:
        prefix = _prefix(request.tenant)
        keys = [prefix + "blocked", prefix + "spend"]
        keys += [prefix + "b:" + b.key for b in request.buckets]
        keys += [prefix + "c:" + s.key for s in request.slots]
        budget = -1.0 if request.budget_usd is None else request.budget_usd
        args: list[str | int | float] = [
            len(request.buckets),
            len(request.slots),
            repr(budget),
            request.request_id,
            LEASE_MS,
            request.reserved_tokens,
        ]
        for bucket in request.buckets:
            args += [repr(bucket.capacity), repr(bucket.rate_per_ms), repr(bucket.cost)]
        args += [slot.limit for slot in request.slots]
        reply = await self._call(self._admit, keys, args)
        status, index, spent, retry = _text(reply[0]), int(reply[1]), float(reply[2]), reply[3]
        if status == "ok":
            levels = tuple(
                Level(float(reply[i]), int(reply[i + 1])) for i in range(4, len(reply), 2)
            )
            return Decision(None, 0, spent, levels)
        if status in _REFUSALS:
            return Decision(_REFUSALS[status], int(retry), spent)
        position = index - 1
        if position < len(request.buckets):
            kind: Refusal = request.buckets[position].kind
        else:
            kind = "concurrency"
        return Decision(kind, int(retry), spent, refused_index=position)

    async def release(self, release: Release) -> float:
        prefix = _prefix(release.tenant)
        keys = [prefix + "spend"]
        keys += [prefix + "b:" + b.key for b in release.buckets]
        keys += [prefix + "c:" + s.key for s in release.slots]
        args: list[str | int | float] = [
            len(release.buckets),
            len(release.slots),
            release.request_id,
            repr(release.cost_usd),
            release.token_delta,
        ]
        for bucket in release.buckets:
            args += [repr(bucket.capacity), repr(bucket.rate_per_ms), repr(bucket.cost)]
        return float(_text(await self._call(self._settle, keys, args)))

    async def set_blocked(self, tenant: str, blocked: bool) -> None:
        key = _prefix(tenant) + "blocked"
        try:
            if blocked:
                await self._redis.set(key, b"1")
            else:
                await self._redis.delete(key)
        except (RedisError, OSError) as exc:
            raise StateUnavailable(str(exc)) from exc

    async def state(self, tenant: str) -> TenantState:
        prefix = _prefix(tenant)
        reply = await self._call(self._state, [prefix + "blocked", prefix + "spend"], [])
        return TenantState(tenant, int(reply[0]) == 1, float(reply[1]), int(reply[2]))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)

    async def _call(self, script: Any, keys: list[str], args: list[str | int | float]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise StateUnavailable(str(exc)) from exc
