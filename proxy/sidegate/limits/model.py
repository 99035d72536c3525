"""What one admission asks of the state backend, and what the backend answers.

A request is described as plain data — token buckets to charge, concurrency slots to take, a
daily budget to check — so the memory and Redis backends implement the very same decision and
the policy (which limits a plan implies) lives in one place (`limits.policy`).

Buckets refill continuously (`per_minute` spread evenly), start full and hold at most
`capacity`; a charge larger than the level is refused as a whole. True-up may push a tokens
bucket below zero: the debt delays the tenant's next requests, so an under-reserved answer
still costs what it really used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

LimitKind = Literal["requests", "tokens"]
Refusal = Literal["requests", "tokens", "concurrency", "budget", "blocked"]

MS_PER_MINUTE: Final = 60_000.0
DAY_MS: Final = 86_400_000


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str  # unique within the tenant, e.g. "rpm" or "tpm:gpt-4o-mini"
    kind: LimitKind
    capacity: float
    per_minute: float
    cost: float  # charged at admission; the true-up delta at settle

    @property
    def rate_per_ms(self) -> float:
        return self.per_minute / MS_PER_MINUTE


@dataclass(frozen=True, slots=True)
class Slot:
    key: str  # unique within the tenant, e.g. "conc" or "conc:gpt-4o-mini"
    limit: int


@dataclass(frozen=True, slots=True)
class Acquire:
    tenant: str
    request_id: str
    buckets: tuple[Bucket, ...]
    slots: tuple[Slot, ...]
    budget_usd: float | None
    reserved_tokens: int


@dataclass(frozen=True, slots=True)
class Release:
    tenant: str
    request_id: str
    buckets: tuple[Bucket, ...]  # the request's buckets; tokens' `cost` = used - reserved
    slots: tuple[Slot, ...]
    cost_usd: float
    token_delta: int


@dataclass(frozen=True, slots=True)
class Level:
    """A bucket after the decision: what is left and how long until it is full again."""

    remaining: float
    reset_ms: int


@dataclass(frozen=True, slots=True)
class Decision:
    refused: Refusal | None
    retry_after_ms: int
    spent_usd: float  # today's spend before this request
    levels: tuple[Level, ...] = ()  # one per bucket, in order, when admitted
    refused_index: int = -1  # which bucket or slot refused (buckets first, then slots)

    @property
    def admitted(self) -> bool:
        return self.refused is None


@dataclass(frozen=True, slots=True)
class TenantState:
    tenant: str
    blocked: bool
    spent_usd: float  # today (UTC)
    tokens: int  # charged today (UTC), reservations trued up


def refill_ms(capacity: float, level: float, rate_per_ms: float) -> int:
    """Milliseconds until a bucket at `level` is full again."""
    if level >= capacity or rate_per_ms <= 0:
        return 0
    return int(-(-(capacity - level) // rate_per_ms))


class StateUnavailable(Exception):
    """The shared state (Redis) could not be reached or did not answer in time."""
