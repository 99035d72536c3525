"""Which backend decides: Redis while it answers, this process's memory while it does not.

With `state.fail_open: true` (the default) an unreachable Redis must not stop traffic: the
request is decided by the local `MemoryState` instead (the same plan, held per process), the
outage is logged once and counted (`llm_state_fallbacks_total`), and Redis is tried again after
`RETRY_SECONDS` — so one dead Redis costs one failed call per second, not one per request.
With `fail_open: false` the request is refused with 503 instead.

A request settles on the backend that admitted it: a slot taken in memory is given back in
memory even if Redis has come back meanwhile. Each answer from Redis leaves the tenant's day
(blocked or not, spent so far) in memory too, so that in an outage an operator's block holds
and a spent budget stays spent on every worker.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final, Protocol

from sidegate.errors import UnavailableError
from sidegate.limits.memory import MemoryState
from sidegate.limits.model import Acquire, Decision, Release, StateUnavailable, TenantState
from sidegate.limits.telemetry import LimitMetrics

if TYPE_CHECKING:
    # redis-py (and the OpenTelemetry SDK it imports) load only when Redis is configured.
    from sidegate.limits.redis_state import RedisState

log = logging.getLogger("sidegate.ratelimit")

RETRY_SECONDS: Final = 1.0


class Backend(Protocol):
    async def acquire(self, request: Acquire) -> Decision: ...

    async def release(self, release: Release) -> float: ...

    async def set_blocked(self, tenant: str, blocked: bool) -> None: ...

    async def state(self, tenant: str) -> TenantState: ...

    async def close(self) -> None: ...


class StateClient(Protocol):
    async def admit(self, request: Acquire) -> tuple[Decision, Backend]: ...

    async def settle(self, backend: Backend, release: Release) -> float | None: ...

    async def set_blocked(self, tenant: str, blocked: bool) -> None: ...

    async def state(self, tenant: str) -> TenantState: ...

    async def close(self) -> None: ...


class Direct:
    """One backend, no fallback (the memory backend)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @property
    def backend(self) -> Backend:
        return self._backend

    async def admit(self, request: Acquire) -> tuple[Decision, Backend]:
        return await self._backend.acquire(request), self._backend

    async def settle(self, backend: Backend, release: Release) -> float | None:
        return await backend.release(release)

    async def set_blocked(self, tenant: str, blocked: bool) -> None:
        await self._backend.set_blocked(tenant, blocked)

    async def state(self, tenant: str) -> TenantState:
        return await self._backend.state(tenant)

    async def close(self) -> None:
        await self._backend.close()


class Failover:
    def __init__(self, redis: RedisState, fail_open: bool, metrics: LimitMetrics) -> None:
        self._redis = redis
        self._local = MemoryState()
        self._fail_open = fail_open
        self._metrics = metrics
        self._down_until = 0.0

    async def admit(self, request: Acquire) -> tuple[Decision, Backend]:
        if time.monotonic() >= self._down_until:
            try:
                decision = await self._redis.acquire(request)
            except StateUnavailable as exc:
                self._went_down(exc)
            else:
                self._came_back()
                blocked = decision.refused == "blocked"
                self._local.remember_day(request.tenant, blocked, decision.spent_usd)
                return decision, self._redis
        if not self._fail_open:
            raise UnavailableError("Rate-limit state is unavailable; try again shortly.")
        self._metrics.fallbacks.inc()
        return self._local.acquire_now(request), self._local

    async def settle(self, backend: Backend, release: Release) -> float | None:
        try:
            return await backend.release(release)
        except StateUnavailable as exc:
            # The reservation stays charged and the slot's lease expires on its own.
            self._went_down(exc)
            return None

    async def set_blocked(self, tenant: str, blocked: bool) -> None:
        await self._local.set_blocked(tenant, blocked)
        try:
            await self._redis.set_blocked(tenant, blocked)
        except StateUnavailable as exc:
            raise UnavailableError("Rate-limit state is unavailable; try again shortly.") from exc

    async def state(self, tenant: str) -> TenantState:
        try:
            return await self._redis.state(tenant)
        except StateUnavailable as exc:
            raise UnavailableError("Rate-limit state is unavailable; try again shortly.") from exc

    async def close(self) -> None:
        await self._redis.close()

    def _went_down(self, exc: Exception) -> None:
        self._metrics.state_errors.inc()
        if self._down_until == 0.0:
            held = "limits held locally" if self._fail_open else "limited requests refused (503)"
            log.warning(
                f"redis unreachable, {held} until it answers again",
                extra={"event": "state_backend_down", "error": str(exc)[:200]},
            )
        self._down_until = time.monotonic() + RETRY_SECONDS

    def _came_back(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            log.info("redis answers again, limits shared", extra={"event": "state_backend_up"})
