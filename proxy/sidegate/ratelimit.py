"""Rate-limit accounting: requests, tokens and concurrency per key, all-or-nothing.

The table lives in the native core (`native/src/ratelimit/`): a sharded map of GCRA states,
safe to share between threads, O(1) per call (a few hundred nanoseconds from Python), with
bounded memory (a key is forgotten once its limits are full again and nothing is in flight).

Using it from the request path::

    limits = Limits(requests_per_minute=60, tokens_per_minute=100_000, max_concurrent=10)
    limiter = RateLimiter()                      # one per process, built in a cleanup context

    reserved = facts.prompt_tokens + (facts.max_tokens or default_max) * facts.n
    decision = limiter.acquire(tenant, limits, reserved)
    headers = rate_limit_headers(decision)       # on every answer, 429 or not
    if not decision.allowed:
        raise RateLimitError(..., headers=headers | retry_after_headers(decision))
    try:
        ...                                      # forward, relay, count real usage
    finally:
        limiter.release(tenant, limits, reserved_tokens=reserved, used_tokens=usage.total)

Semantics, which a shared backend (e.g. Redis) must keep:

- `acquire` admits iff *every* configured limit allows it; a denial charges nothing. It
  charges one request, `tokens` tokens and one concurrency slot. `acquire_all` does the same
  for several keys at once (a tenant, and the tenant on one model): all admitted or none
  charged.
- `release` frees the slot and trues up the token charge from `reserved_tokens` to
  `used_tokens` (a refund when the answer was shorter; extra usage becomes a debt that delays
  later requests). `true_up` does the token part alone. Call `release` exactly once per
  admitted request, also when it fails or the client disconnects.
- Rates are GCRA ("token buckets" that refill continuously): `requests_per_minute` requests
  per minute with bursts of up to `burst` (default: the per-minute limit), and likewise for
  tokens. `Decision.too_large` marks a token cost above the bucket size, which no wait can
  admit (OpenAI answers those with 429 as well, but clients must not retry).
- `now` (seconds on a monotonic clock) may be passed to every call, for tests and for
  replaying; leave it out everywhere to use the table's own monotonic clock. Don't mix both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from sidegate import _native

Decision = _native.Decision

__all__ = [
    "Decision",
    "Limits",
    "RateLimiter",
    "format_duration",
    "rate_limit_headers",
    "retry_after_headers",
]

DEFAULT_MAX_KEYS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one plan; `None` leaves a limit out."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent: int | None = None
    burst: int | None = None
    policy: _native.Policy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute", "max_concurrent", "burst"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (got {value})")
        policy = _native.Policy(
            requests=self.requests_per_minute,
            tokens=self.tokens_per_minute,
            max_concurrent=self.max_concurrent,
            request_burst=self.burst,
            period=60.0,
        )
        # The native policy is built once per plan so each acquire passes one reference.
        object.__setattr__(self, "policy", policy)


class RateLimiter:
    """The per-process limiter table. Thread-safe; share one instance."""

    __slots__ = ("_table",)

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._table = _native.Limiter(max_keys)

    @property
    def native(self) -> _native.Limiter:
        """The table itself, for a caller that calls it on every request (`limits.memory`)."""
        return self._table

    def acquire(
        self, key: str, limits: Limits, tokens: int = 0, *, now: float | None = None
    ) -> Decision:
        """Charge one request, `tokens` tokens and a concurrency slot, or nothing."""
        return self._table.acquire(key, limits.policy, tokens, now)

    def acquire_all(
        self, asks: Sequence[tuple[str, Limits, int]], *, now: float | None = None
    ) -> tuple[int | None, list[Decision]]:
        """`acquire` for several `(key, limits, tokens)` asks, all or nothing.

        Returns the index of the refused ask, or None when all were admitted and charged,
        and one decision per ask up to and including the refused one. Release each admitted
        key on its own afterwards.
        """
        native = [(key, limits.policy, tokens) for key, limits, tokens in asks]
        return self._table.acquire_all(native, now)

    def release(
        self,
        key: str,
        limits: Limits,
        *,
        reserved_tokens: int = 0,
        used_tokens: int | None = None,
        now: float | None = None,
    ) -> None:
        """End an admitted request; `used_tokens=None` keeps the reserved charge as it is."""
        self._table.release(key, limits.policy, reserved_tokens, used_tokens, now)

    def true_up(
        self,
        key: str,
        limits: Limits,
        *,
        reserved_tokens: int,
        used_tokens: int,
        now: float | None = None,
    ) -> None:
        """Correct a token charge without freeing the concurrency slot."""
        self._table.true_up(key, limits.policy, reserved_tokens, used_tokens, now)

    def peek(self, key: str, limits: Limits, *, now: float | None = None) -> Decision:
        """The state of `key` (for headers) without charging anything."""
        return self._table.peek(key, limits.policy, now)

    def __len__(self) -> int:
        return len(self._table)


def format_duration(seconds: float) -> str:
    """A reset time as OpenAI writes it: `12ms`, `1s`, `6m0s`, `1h2m3.5s` (rounded up to 1 ms)."""
    millis = max(0, math.ceil(seconds * 1000 - 1e-6))
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest // 1000}" if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers for the limits the decision reports."""
    headers: dict[str, str] = {}
    for name, state in (("requests", decision.requests), ("tokens", decision.tokens)):
        if state is None:
            continue
        limit, remaining, reset = state
        headers[f"x-ratelimit-limit-{name}"] = str(limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(remaining)
        headers[f"x-ratelimit-reset-{name}"] = format_duration(reset)
    return headers


def retry_after_headers(decision: Decision, *, minimum: float = 1.0) -> dict[str, str]:
    """`Retry-After` (whole seconds) and `retry-after-ms` for a denial.

    Concurrency and capacity denials have no natural wait, so they get `minimum`.
    """
    wait = decision.retry_after if decision.retry_after > 0 else minimum
    return {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))}
