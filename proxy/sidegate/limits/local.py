"""The memory backend's request path, with each plan x model worked out once.

On `state.backend: memory` nothing is remote, so an admission costs only Python work. The
buckets and slots a plan puts on a model, the native layout of their keys, and which of the
table's answers feed each `x-ratelimit-*` header are the same for every request of that plan
and model: a `Shape` keeps them, and a request only charges the table and writes its headers.
Decisions, refusals and headers are the ones the general path gives (`limits.gate`); refusals,
which are rare, go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

from sidegate.exchange import Exchange
from sidegate.limits import policy
from sidegate.limits.headers import duration
from sidegate.limits.memory import Layout, MemoryState
from sidegate.limits.model import Bucket, Slot
from sidegate.ratelimit import Decision as NativeDecision
from sidegate.settings import PlanSettings

# Distinct plan x model shapes kept before the memo starts over.
_MAX_SHAPES: Final = 4096

# `on_settled(tenant, cost_usd, budget_usd, spent_usd)`: the budget gauge and alert.
Settled = Callable[[str, float, float | None, float], None]


class _HeaderSource(NamedTuple):
    names: tuple[str, str, str]  # x-ratelimit-{limit,remaining,reset}-<kind>
    # Per bucket of that kind: its scope's position in the table's answers, whether it is the
    # scope's tokens bucket, and its per-minute limit as the header writes it.
    buckets: tuple[tuple[int, bool, str], ...]


class Shape(NamedTuple):
    layout: Layout
    buckets: tuple[Bucket, ...]  # tokens buckets with a cost of 0: the reservation varies
    slots: tuple[Slot, ...]
    headers: tuple[_HeaderSource, ...]

    @property
    def charged(self) -> tuple[Layout, tuple[Bucket, ...], tuple[Slot, ...]]:
        return self.layout, self.buckets, self.slots


def build_shape(memory: MemoryState, plan: PlanSettings | None, model: str) -> Shape:
    buckets = policy.buckets(plan, model, 0) if plan else ()
    slots = policy.slots(plan, model) if plan else ()
    layout = memory.layout(buckets, slots)
    headers = []
    for kind in ("requests", "tokens"):
        sources = tuple(
            (*layout.sources[index], str(int(bucket.per_minute)))
            for index, bucket in enumerate(buckets)
            if bucket.kind == kind
        )
        if sources:
            names = (
                f"x-ratelimit-limit-{kind}",
                f"x-ratelimit-remaining-{kind}",
                f"x-ratelimit-reset-{kind}",
            )
            headers.append(_HeaderSource(names, sources))
    return Shape(layout, buckets, slots, tuple(headers))


class Shapes:
    """`Shape`s by plan and model (plans are settings: they live as long as the app)."""

    __slots__ = ("_shapes", "memory")

    def __init__(self, memory: MemoryState) -> None:
        self.memory = memory
        self._shapes: dict[tuple[int, str], tuple[PlanSettings | None, Shape]] = {}

    def get(self, plan: PlanSettings | None, model: str) -> Shape:
        found = self._shapes.get((id(plan), model))
        if found is not None and found[0] is plan:
            return found[1]
        if len(self._shapes) >= _MAX_SHAPES:
            self._shapes.clear()
        shape = build_shape(self.memory, plan, model)
        self._shapes[(id(plan), model)] = (plan, shape)
        return shape


def admitted_headers(shape: Shape, decisions: Sequence[NativeDecision]) -> dict[str, str]:
    """The tightest requests and tokens limits, as `limits.headers.admitted_headers` picks."""
    headers: dict[str, str] = {}
    for source in shape.headers:
        limit, tightest = "", None
        for position, tokens, per_minute in source.buckets:
            decision = decisions[position]
            snapshot = decision.tokens if tokens else decision.requests
            if snapshot is not None and (tightest is None or snapshot[1] < tightest[1]):
                limit, tightest = per_minute, snapshot
        if tightest is not None:
            _, remaining, reset = tightest
            limit_name, remaining_name, reset_name = source.names
            headers[limit_name] = limit
            headers[remaining_name] = str(max(0, remaining))
            headers[reset_name] = duration(int(reset * 1000))
    return headers


def spent_on(exchange: Exchange) -> tuple[int, float]:
    """Tokens and dollars the answer spent upstream: none for a cache hit or an answer that
    never came."""
    if exchange.upstream == "-" or exchange.cache == "hit":
        return 0, 0.0
    return exchange.input_tokens + exchange.output_tokens, exchange.cost_usd


class LocalTicket:
    """An admitted request on the memory backend; `settle` trues up and frees its charges."""

    __slots__ = (
        "_budget",
        "_memory",
        "_on_settled",
        "_reserved",
        "_settled",
        "_shape",
        "_tenant",
        "headers",
    )

    def __init__(
        self,
        memory: MemoryState,
        shape: Shape,
        tenant: str,
        reserved: int,
        budget: float | None,
        headers: dict[str, str],
        on_settled: Settled,
    ) -> None:
        self._memory = memory
        self._shape = shape
        self._tenant = tenant
        self._reserved = reserved
        self._budget = budget
        self._on_settled = on_settled
        self._settled = False
        self.headers = headers

    async def settle(self, exchange: Exchange) -> None:
        if self._settled:
            return
        self._settled = True
        used, cost = spent_on(exchange)
        layout = self._shape.layout
        spent = self._memory.settle(self._tenant, layout, used - self._reserved, cost)
        self._on_settled(self._tenant, cost, self._budget, spent)
