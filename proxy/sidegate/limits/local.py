"""The memory backend's request path, with each plan x model worked out once.

On `state.backend: memory` nothing is remote, so an admission costs only Python work. The
buckets and slots a plan puts on a model, the native layout of their keys, and which of the
table's answers feed each `x-ratelimit-*` header are the same for every request of that plan
and model: a `Shape` keeps them (the native table holds its own copy), and a request is one
native call that checks the tenant's ledger, charges every scope and writes the headers, and
one (the native ticket's `settle`) that frees, trues up and adds the cost to the day.
Decisions, refusals and headers are the ones the general path gives (`limits.gate`); refusals,
which are rare, go through it.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from sidegate.exchange import Exchange
from sidegate.limits import policy
from sidegate.limits.memory import Layout, MemoryState
from sidegate.limits.model import Bucket, Slot
from sidegate.settings import PlanSettings

# Distinct plan x model shapes kept before the memo starts over.
_MAX_SHAPES: Final = 4096


class Shape(NamedTuple):
    """What `MemoryState.admit` charges (a `(layout, buckets, slots)` tuple itself)."""

    layout: Layout  # with the table's own copy, which writes the headers
    buckets: tuple[Bucket, ...]  # tokens buckets with a cost of 0: the reservation varies
    slots: tuple[Slot, ...]


def build_shape(memory: MemoryState, plan: PlanSettings | None, model: str) -> Shape:
    buckets = policy.buckets(plan, model, 0) if plan else ()
    slots = policy.slots(plan, model) if plan else ()
    return Shape(memory.layout(buckets, slots), buckets, slots)


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


def spent_on(exchange: Exchange) -> tuple[int, float]:
    """Tokens and dollars the answer spent upstream: none for a cache hit or an answer that
    never came."""
    if exchange.upstream == "-" or exchange.cache == "hit":
        return 0, 0.0
    return exchange.input_tokens + exchange.output_tokens, exchange.cost_usd
