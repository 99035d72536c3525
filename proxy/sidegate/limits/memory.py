"""The in-process state backend: every limit of every tenant in this process's memory.

This is the default (`state.backend: memory`) and the local fallback of the Redis backend.
Buckets and concurrency slots live in the native rate-limit table (`sidegate.ratelimit`: GCRA,
all-or-nothing per key, true-up with debt); the daily spend and the block list live in its
ledger beside them. A request is one key per scope — the tenant, and the tenant on that model
when the plan limits the model — admitted together, all or nothing, in one native call that
checks the ledger first (`admit`; `acquire_all` on the general path).

It is exact for one process: `sidegate serve --workers N` with N > 1 is refused at start-up
while limits use this backend (see `limits.workers_problem`): each worker would hold its own
copy, and the real limit would become limit x N.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, NamedTuple

from sidegate._native import LimitShape, LimitTicket
from sidegate.limits.model import (
    DAY_MS,
    Acquire,
    Bucket,
    Decision,
    Level,
    Refusal,
    Release,
    Slot,
    TenantState,
)
from sidegate.ratelimit import Decision as NativeDecision
from sidegate.ratelimit import Limits, RateLimiter

_SEPARATOR = "\x1f"  # cannot appear in a tenant name from YAML or a JWT claim we accept
# `on_alert(tenant, cost_usd, budget_usd, spent_usd)`: a settled cost crossed 80 % of the budget.
BudgetAlert = Callable[[str, float, float, float], None]
# Distinct plan shapes remembered (plans x models in practice); past it the memo starts over.
_MAX_LAYOUTS: Final = 1024


class Layout(NamedTuple):
    scopes: tuple[tuple[str, Limits, int], ...]  # scope, its limits, its tokens bucket or -1
    sources: tuple[tuple[int, bool], ...]  # per bucket: its scope's position, tokens or not
    # The same, for the table to charge and answer the x-ratelimit-* headers in one call.
    native: LimitShape


def _scope(key: str) -> str:
    """ "rpm" -> "" (the tenant), "tpm:gpt-4o" -> "gpt-4o" (the tenant on that model)."""
    return key.partition(":")[2]


class MemoryState:
    """Token buckets, concurrency slots, daily spend and the block list, per tenant."""

    def __init__(self) -> None:
        self._table = RateLimiter()
        self._native = self._table.native  # the per-request path calls it without a wrapper
        self._limits: dict[tuple[int | None, ...], Limits] = {}
        self._layouts: dict[tuple[object, ...], Layout] = {}

    def _layout(self, buckets: tuple[Bucket, ...], slots: tuple[Slot, ...]) -> Layout:
        """Each scope with its native limits and the index of its tokens bucket (-1: none),
        and where each bucket's level comes from in the table's answer.

        A plan's shape repeats on every request: it is worked out once per distinct shape."""
        key = (tuple([(b.key, b.kind, b.capacity, b.per_minute) for b in buckets]), slots)
        layout = self._layouts.get(key)
        if layout is not None:
            return layout
        found: dict[str, list[int | None]] = {}
        tokens: dict[str, int] = {}
        for index, bucket in enumerate(buckets):
            spec = found.setdefault(_scope(bucket.key), [None, None, None, None])
            if bucket.kind == "requests":
                spec[0], spec[3] = int(bucket.per_minute), int(bucket.capacity)
            else:
                spec[1] = int(bucket.per_minute)
                tokens[_scope(bucket.key)] = index
        for slot in slots:
            found.setdefault(_scope(slot.key), [None, None, None, None])[2] = slot.limit
        built: list[tuple[str, Limits, int]] = []
        for scope, spec in found.items():
            shape = tuple(spec)
            limits = self._limits.get(shape)
            if limits is None:
                limits = self._limits[shape] = Limits(*spec)
            built.append((scope, limits, tokens.get(scope, -1)))
        positions = {scope: position for position, (scope, _, _) in enumerate(built)}
        sources = tuple((positions[_scope(b.key)], b.kind == "tokens") for b in buckets)
        if len(self._layouts) >= _MAX_LAYOUTS:
            self._layouts.clear()
        native = _native_shape(built, buckets, sources)
        layout = self._layouts[key] = Layout(tuple(built), sources, native)
        return layout

    def layout(self, buckets: tuple[Bucket, ...], slots: tuple[Slot, ...]) -> Layout:
        """The native layout of a plan's shape (see `limits.local`, which keeps it)."""
        return self._layout(buckets, slots)

    def admit(
        self,
        tenant: str,
        shape: tuple[Layout, tuple[Bucket, ...], tuple[Slot, ...]],
        reserve: int,
        budget: float | None,
        on_alert: BudgetAlert | None = None,
    ) -> LimitTicket | Decision:
        """`acquire_now` for a plan shape already laid out (`limits.local`), the token
        reservation given apart, in one native call: the admitted request's ticket (its
        `x-ratelimit-*` headers, its `settle`), or the refusal. `on_alert` is called when a
        settled cost crosses 80 % of `budget`."""
        answer = self._native.admit_ticket(shape[0].native, tenant, reserve, budget, on_alert)
        if isinstance(answer, LimitTicket):
            return answer
        return self.refusal(shape, answer)

    @property
    def admit_ticket(self) -> Callable[..., LimitTicket | tuple[str, int, float, float]]:
        """The native admission `admit` wraps, for the request path to call directly."""
        return self._native.admit_ticket

    def refusal(
        self,
        shape: tuple[Layout, tuple[Bucket, ...], tuple[Slot, ...]],
        answer: tuple[str, int, float, float],
    ) -> Decision:
        """The `Decision` for a refusal of `admit_ticket`: `(why, scope, wait s, spent)`."""
        layout, buckets, slots = shape
        why, scope, wait, spent = answer
        if why in _LEDGER_REFUSALS:
            return _barred(why, spent)
        return _refused(buckets, slots, layout.scopes[scope][0], why, wait, spent)

    def spend(self, tenant: str, token_delta: int, cost_usd: float) -> float:
        """Add an answer's cost to today's spend; returns the spend after it."""
        return self._native.ledger_spend(tenant, token_delta, cost_usd)

    def remember_day(self, tenant: str, blocked: bool, spent_usd: float) -> None:
        """What the shared state says of the tenant's day (blocked, spent so far), kept here for
        when this process must decide alone: a block holds, and a spent budget stays spent."""
        was_blocked, spent, _ = self._native.ledger_day(tenant)
        if blocked != was_blocked:
            self._native.set_blocked(tenant, blocked)
        if spent_usd > spent:
            self._native.ledger_spend(tenant, 0, spent_usd - spent)

    def budgets(self) -> list[tuple[str, float, float]]:
        """`(tenant, daily budget, spent today)` for each tenant admitted under a budget."""
        return self._native.budgets()

    def _charge(
        self,
        tenant: str,
        shape: tuple[Layout, tuple[Bucket, ...], tuple[Slot, ...]],
        reserve: int,
        budget: float | None,
    ) -> tuple[Decision | None, list[NativeDecision]]:
        layout, buckets, slots = shape
        barred = self._native.ledger_bar(tenant, budget)
        if barred is not None:
            return _barred(*barred), []
        asks = [
            (
                tenant if not scope else tenant + _SEPARATOR + scope,
                limits,
                reserve if index >= 0 else 0,
            )
            for scope, limits, index in layout.scopes
        ]
        refused, decisions = self._table.acquire_all(asks)
        if refused is not None:
            denied = decisions[refused]
            scope = layout.scopes[refused][0]
            spent = self._native.ledger_day(tenant)[1]
            wait = denied.retry_after
            return _refused(buckets, slots, scope, denied.denied_by, wait, spent), decisions
        self._native.ledger_reserve(tenant, reserve)
        return None, decisions

    def _settle(self, tenant: str, layout: Layout, token_delta: int, cost_usd: float) -> float:
        reserved, used = max(0, -token_delta), max(0, token_delta)
        self._native.settle_shape(layout.native, tenant, reserved, used)
        return self.spend(tenant, token_delta, cost_usd)

    async def acquire(self, request: Acquire) -> Decision:
        return self.acquire_now(request)

    def acquire_now(self, request: Acquire) -> Decision:
        # A tokens bucket's cost at admission is the request's reservation
        # (`RequestFacts.reservation`).
        layout = self._layout(request.buckets, request.slots)
        shape = (layout, request.buckets, request.slots)
        refusal, decisions = self._charge(
            request.tenant, shape, request.reserved_tokens, request.budget_usd
        )
        if refusal is not None:
            return refusal
        levels = []
        for position, tokens in layout.sources:
            decision = decisions[position]
            snapshot = decision.tokens if tokens else decision.requests
            assert snapshot is not None  # the scope has this kind of bucket
            _, remaining, reset = snapshot
            levels.append(Level(float(remaining), int(reset * 1000)))
        spent = self._native.ledger_day(request.tenant)[1]
        return Decision(None, 0, spent, tuple(levels))

    async def release(self, release: Release) -> float:
        return self.release_now(release)

    def release_now(self, release: Release) -> float:
        layout = self._layout(release.buckets, release.slots)
        return self._settle(release.tenant, layout, release.token_delta, release.cost_usd)

    async def set_blocked(self, tenant: str, blocked: bool) -> None:
        self._native.set_blocked(tenant, blocked)

    async def state(self, tenant: str) -> TenantState:
        blocked, spent, tokens = self._native.ledger_day(tenant)
        return TenantState(tenant, blocked, spent, tokens)

    async def close(self) -> None:
        return None


_LEDGER_REFUSALS: Final = ("blocked", "budget")


def _barred(why: str, spent: float) -> Decision:
    """The ledger's refusal: a blocked tenant, or one past its daily budget until the budgets
    renew at 00:00 UTC."""
    if why == "blocked":
        return Decision("blocked", 0, spent)
    return Decision("budget", int(DAY_MS - time.time() * 1000 % DAY_MS), spent)


def _native_shape(
    scopes: list[tuple[str, Limits, int]],
    buckets: tuple[Bucket, ...],
    sources: tuple[tuple[int, bool], ...],
) -> LimitShape:
    """The table's copy of a layout: each scope's key suffix, and which answers may speak
    for the requests and for the tokens headers (`limits.headers.admitted_headers`)."""
    keyed = [
        (_SEPARATOR + scope if scope else "", limits.policy, index >= 0)
        for scope, limits, index in scopes
    ]
    headers = []
    for tokens in (False, True):
        speakers = [
            (position, is_tokens, int(bucket.per_minute))
            for bucket, (position, is_tokens) in zip(buckets, sources, strict=True)
            if (bucket.kind == "tokens") is tokens
        ]
        if speakers:
            headers.append((tokens, speakers))
    return LimitShape(keyed, headers)


def _refused(
    buckets: tuple[Bucket, ...],
    slots: tuple[Slot, ...],
    scope: str,
    denied_by: str | None,
    wait: float,
    spent: float,
) -> Decision:
    if denied_by in ("requests", "tokens"):
        for index, bucket in enumerate(buckets):
            if bucket.kind == denied_by and _scope(bucket.key) == scope:
                kind: Refusal = bucket.kind
                return Decision(kind, int(wait * 1000), spent, refused_index=index)
    for index, slot in enumerate(slots):
        if _scope(slot.key) == scope:
            position = len(buckets) + index
            return Decision("concurrency", 1000, spent, refused_index=position)
    # The table is full of keys (`capacity`): refuse briefly rather than forget a limit.
    return Decision("concurrency", 1000, spent, refused_index=len(buckets))
