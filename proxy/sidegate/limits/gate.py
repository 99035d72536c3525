"""`LimitAdmission`: the `Admission` seam backed by a state client (memory or Redis).

admit: one call to the state backend checks the block list, the daily budget and every bucket
and slot of the request, and charges all of them or none. A refusal is a 429 (`requests` /
`tokens` / concurrency: `rate_limit_exceeded`; budget: `insufficient_quota`, with
`x-should-retry: false` so the OpenAI SDKs do not retry it) or a 403 for a blocked tenant.

settle: the true-up (reserved tokens -> real usage; a cache hit or an answer that never came
uses none, since no upstream tokens were spent), the slot release and the budget charge with
the real cost. On Redis they run in a background task, so the answer never waits for a second
round trip (`close` waits for the ones still running); in memory there is no round trip to
save, so they run at once (a task per request would cost more than the settle itself).
Crossing 80 % of the daily budget logs one `budget_threshold` event and counts
`llm_budget_alerts_total` (the backend's atomic increment decides which request crossed it, so
across replicas exactly one does).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from sidegate._native import LimitShape, header_block

# The memory backend's ticket (native); `LimitTicket` below is the remote backends'.
from sidegate._native import LimitTicket as LocalTicket
from sidegate.errors import (
    PermissionDeniedError,
    ProxyError,
    QuotaExceededError,
    RateLimitError,
)
from sidegate.exchange import Exchange
from sidegate.inspection import RequestFacts
from sidegate.limits import policy
from sidegate.limits.failover import Backend, Direct, StateClient
from sidegate.limits.headers import (
    RequestsLimitError,
    TokensLimitError,
    admitted_headers,
    refused_headers,
    retry_headers,
)
from sidegate.limits.local import Shape, Shapes, spent_on
from sidegate.limits.memory import MemoryState
from sidegate.limits.model import Acquire, Bucket, Decision, Release, Slot, TenantState
from sidegate.limits.telemetry import LimitMetrics
from sidegate.observability.metrics import Metrics, Values
from sidegate.routing import Candidate
from sidegate.settings import PlanSettings

log = logging.getLogger("sidegate.ratelimit")

ALERT_RATIO: Final = 0.8  # the native ticket's alert line is the same (`ALERT_RATIO` there)
# Plan x model pairs remembered by the request path before the memo starts over.
_MAX_LOCAL: Final = 4096
# A plan's shape for a model on the memory backend (None: nothing limited), the shape's native
# half (what the request path hands the table) and the plan's daily budget.
_Local = tuple[Shape | None, LimitShape | None, float | None]


class _Free:
    __slots__ = ()
    header_lines = b""

    @property
    def headers(self) -> dict[str, str]:
        return {}

    def settle(self, exchange: Exchange) -> None:
        return None


_FREE: Final = _Free()


class LimitTicket:
    __slots__ = ("_backend", "_buckets", "_gate", "_headers", "_reserved", "_settled", "_slots")

    def __init__(
        self,
        gate: LimitAdmission,
        backend: Backend,
        buckets: tuple[Bucket, ...],
        slots: tuple[Slot, ...],
        reserved: int,
        headers: dict[str, str],
    ) -> None:
        self._gate = gate
        self._backend = backend
        self._buckets = buckets
        self._slots = slots
        self._reserved = reserved
        self._headers = headers
        self._settled = False

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    @property
    def header_lines(self) -> bytes:
        return header_block(self._headers)

    def settle(self, exchange: Exchange) -> None:
        if self._settled:
            return
        self._settled = True
        used, cost = spent_on(exchange)
        delta = used - self._reserved
        backend = self._backend
        memory = type(backend) is MemoryState
        # Every bucket goes back (the memory table needs the plan's full shape); only the
        # tokens buckets carry a charge: the difference between use and reservation. The
        # memory table reads the charge from `token_delta` alone, so its buckets go back as
        # they were admitted.
        trued = (
            self._buckets
            if memory
            else tuple(
                Bucket(b.key, b.kind, b.capacity, b.per_minute, delta if b.kind == "tokens" else 0)
                for b in self._buckets
            )
        )
        release = Release(
            exchange.tenant.name,
            exchange.request_id,
            trued,
            self._slots,
            cost,
            delta,
        )
        plan = exchange.tenant.plan
        budget = plan.daily_budget_usd if plan else None
        if type(backend) is MemoryState:
            spent = backend.release_now(release)
            self._gate.settled(release.tenant, release.cost_usd, budget, spent)
        else:
            self._gate.settle_later(backend, release, budget)


class LimitAdmission:
    def __init__(
        self,
        client: StateClient,
        metrics: Metrics,
        limit_metrics: LimitMetrics,
        *,
        blocking: bool,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._limit_metrics = limit_metrics
        self._blocking = blocking  # an operator may block tenants: check even plan-less ones
        self._pending: set[asyncio.Task[None]] = set()
        self._budget_remaining = Values(metrics.budget_remaining)
        # The memory backend answers without I/O: it is called directly, with no coroutine,
        # on its own path (`limits.local`).
        backend = client.backend if isinstance(client, Direct) else None
        self._shapes = Shapes(backend) if type(backend) is MemoryState else None
        self._limited: dict[int, tuple[PlanSettings | None, bool]] = {}
        # Per plan (by id, kept with the plan: an id is reused once its plan is freed) and
        # model: on the memory backend the shape (None: nothing to check, the request passes
        # free) and the daily budget. The request path's lookup, in two dicts: a (plan, model)
        # key was a tuple made, hashed and compared on every request.
        self._local: dict[int, tuple[PlanSettings | None, dict[str, _Local]]] = {}
        self._local_entries = 0
        self._on_alert = self._budget_alert
        if self._shapes is not None:
            self._admit_ticket = self._shapes.memory.admit_ticket
            # The memory backend's ledger is read when scraped, not written on every request.
            metrics.before_scrape.append(self._refresh_budgets)

    def admit_now(
        self, exchange: Exchange, facts: RequestFacts, candidate: Candidate
    ) -> LocalTicket | _Free | None:
        tenant = exchange.tenant
        plan = tenant.plan
        known = self._local.get(id(plan))
        if known is None or known[0] is not plan:
            return self._admit_first(exchange, facts, candidate)
        local = known[1].get(facts.model)
        if local is None:
            return self._admit_first(exchange, facts, candidate)
        shape, native, budget = local
        if shape is None or native is None:  # nothing limited: both None
            return _FREE
        reserve = facts.reservation
        answer = self._admit_ticket(native, tenant.name, reserve, budget, self._on_alert)
        if type(answer) is LocalTicket:
            return answer
        raise self._refused_locally(exchange, facts, shape, reserve, answer)

    def _admit_first(
        self, exchange: Exchange, facts: RequestFacts, candidate: Candidate
    ) -> LocalTicket | _Free | None:
        """`admit_now` for a plan and model not seen yet: what they limit, worked out once."""
        plan = exchange.tenant.plan
        if self._local_entries >= _MAX_LOCAL:
            self._local.clear()
            self._local_entries = 0
        known = self._local.get(id(plan))
        if known is None or known[0] is not plan:  # new, or a new plan where a freed one was
            known = self._local[id(plan)] = (plan, {})
        models = known[1]
        if not (self._blocking or self._limits_anything(plan)):
            models[facts.model] = (None, None, None)
            self._local_entries += 1
            return _FREE
        if self._shapes is None:
            return None  # the state is remote
        budget = plan.daily_budget_usd if plan else None
        shape = self._shapes.get(plan, facts.model)
        models[facts.model] = (shape, shape.layout.native, budget)
        self._local_entries += 1
        return self.admit_now(exchange, facts, candidate)

    async def admit(
        self, exchange: Exchange, facts: RequestFacts, candidate: Candidate
    ) -> LimitTicket | LocalTicket | _Free:
        decided = self.admit_now(exchange, facts, candidate)
        if decided is not None:
            return decided
        tenant = exchange.tenant
        plan = tenant.plan
        reserve = facts.reservation
        buckets = policy.buckets(plan, facts.model, reserve) if plan else ()
        slots = policy.slots(plan, facts.model) if plan else ()
        budget = plan.daily_budget_usd if plan else None
        request = Acquire(tenant.name, exchange.request_id, buckets, slots, budget, reserve)
        decision, backend = await self._client.admit(request)
        if budget is not None:
            self._budget_remaining(self._metrics.tenant(tenant.name)).set(
                max(0.0, budget - decision.spent_usd)
            )
        if not decision.admitted:
            label = self._metrics.tenant(tenant.name)
            self._metrics.rate_limited.labels(label, decision.refused).inc()
            raise _refusal(decision, request, budget)
        headers = admitted_headers(buckets, decision.levels)
        return LimitTicket(self, backend, buckets, slots, reserve, headers)

    def _limits_anything(self, plan: PlanSettings | None) -> bool:
        """`policy.limited`, worked out once per plan (plans live as long as the app)."""
        found = self._limited.get(id(plan))
        if found is None or found[0] is not plan:
            found = self._limited[id(plan)] = (plan, policy.limited(plan))
        return found[1]

    def _refused_locally(
        self,
        exchange: Exchange,
        facts: RequestFacts,
        shape: Shape,
        reserve: int,
        answer: tuple[str, int, float, float],
    ) -> ProxyError:
        """The memory backend's refusal, counted, as the general path words it."""
        assert self._shapes is not None
        tenant, plan = exchange.tenant.name, exchange.tenant.plan
        refusal = self._shapes.memory.refusal(shape, answer)
        budget = plan.daily_budget_usd if plan else None
        buckets = policy.buckets(plan, facts.model, reserve) if plan else ()
        request = Acquire(tenant, exchange.request_id, buckets, shape.slots, budget, reserve)
        label = self._metrics.tenant(tenant)
        if budget is not None:
            self._budget_remaining(label).set(max(0.0, budget - refusal.spent_usd))
        self._metrics.rate_limited.labels(label, refusal.refused).inc()
        return _refusal(refusal, request, budget)

    def _refresh_budgets(self) -> None:
        """The budget gauge from the memory backend's ledger (tenants sharing a label, when
        the tenant label is off, show the least left)."""
        assert self._shapes is not None
        left: dict[str, float] = {}
        for tenant, budget, spent in self._shapes.memory.budgets():
            label = self._metrics.tenant(tenant)
            remaining = max(0.0, budget - spent)
            left[label] = min(remaining, left.get(label, remaining))
        for label, remaining in left.items():
            self._budget_remaining(label).set(remaining)

    def settle_later(self, backend: Backend, release: Release, budget: float | None) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(backend, release, budget))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle(self, backend: Backend, release: Release, budget: float | None) -> None:
        spent = await self._client.settle(backend, release)
        self.settled(release.tenant, release.cost_usd, budget, spent)

    def settled(
        self, tenant: str, cost_usd: float, budget: float | None, spent: float | None
    ) -> None:
        """The budget gauge and the 80 % alert, once the backend has the real cost."""
        if spent is None or budget is None:
            return
        label = self._metrics.tenant(tenant)
        self._budget_remaining(label).set(max(0.0, budget - spent))
        before = spent - cost_usd
        if cost_usd > 0 and before < budget * ALERT_RATIO <= spent:
            self._budget_alert(tenant, cost_usd, budget, spent)

    def _budget_alert(self, tenant: str, cost_usd: float, budget: float, spent: float) -> None:
        """This request's cost took the tenant's day past 80 % of its budget."""
        self._limit_metrics.budget_alerts.labels(self._metrics.tenant(tenant)).inc()
        log.warning(
            "tenant has spent 80% of its daily budget",
            extra={
                "event": "budget_threshold",
                "tenant": tenant,
                "spent_usd": round(spent, 6),
                "budget_usd": budget,
            },
        )

    async def set_blocked(self, tenant: str, blocked: bool) -> None:
        await self._client.set_blocked(tenant, blocked)
        log.warning(
            "tenant blocked" if blocked else "tenant unblocked",
            extra={"event": "tenant_blocked" if blocked else "tenant_unblocked", "tenant": tenant},
        )

    async def state(self, tenant: str) -> TenantState:
        return await self._client.state(tenant)

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._client.close()


def _refusal(decision: Decision, request: Acquire, budget: float | None) -> ProxyError:
    error = _refusal_error(decision, request, budget)
    if isinstance(error, RateLimitError):
        error.limit = decision.refused
    return error


def _refusal_error(decision: Decision, request: Acquire, budget: float | None) -> ProxyError:
    retry = decision.retry_after_ms
    if decision.refused == "blocked":
        return PermissionDeniedError(
            "This tenant has been blocked by the operator.", code="tenant_blocked"
        )
    if decision.refused == "budget":
        return QuotaExceededError(
            f"You exceeded your daily budget of ${budget:g}; it renews at 00:00 UTC.",
            headers={**retry_headers(retry), "x-should-retry": "false"},
        )
    if decision.refused == "concurrency":
        index = decision.refused_index - len(request.buckets)
        limit = f": limit {request.slots[index].limit}" if index < len(request.slots) else ""
        return RequestsLimitError(
            f"Too many concurrent requests{limit}. Please try again shortly.",
            headers=retry_headers(retry),
        )
    bucket = request.buckets[decision.refused_index]
    if bucket.kind == "tokens" and bucket.cost > bucket.capacity:
        # No wait makes room for it: a retry hint would only have the SDKs send it again.
        return TokensLimitError(
            f"Request too large: it needs {int(bucket.cost)} tokens and the limit is "
            f"{int(bucket.capacity)} tokens per min. Lower max_tokens or the prompt.",
            headers={
                "x-ratelimit-limit-tokens": str(int(bucket.per_minute)),
                "x-should-retry": "false",
            },
        )
    headers = refused_headers(bucket.kind, bucket.per_minute, retry)
    if bucket.kind == "tokens":
        return TokensLimitError(
            f"Rate limit reached on tokens per min (TPM): limit {int(bucket.per_minute)}, "
            f"requested {int(bucket.cost)}. Please try again in {retry / 1000:g}s.",
            headers=headers,
        )
    return RequestsLimitError(
        f"Rate limit reached on requests per min (RPM): limit {int(bucket.per_minute)}. "
        f"Please try again in {retry / 1000:g}s.",
        headers=headers,
    )
