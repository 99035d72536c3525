"""Rate-limit acquire from Python: requests, tokens and concurrency in one call."""

from __future__ import annotations

from conftest import Measure
from sidegate import _native
from sidegate.ratelimit import Limits, RateLimiter

# Limits high enough that every acquire in the run is admitted (the common case).
LIMITS = Limits(requests_per_minute=10**9, tokens_per_minute=10**12)


def test_acquire_facade(measure: Measure) -> None:
    limiter = RateLimiter()
    measure("limiter-acquire", "RateLimiter.acquire", limiter.acquire, "tenant-acme", LIMITS, 900)


def test_acquire_native(measure: Measure) -> None:
    limiter = _native.Limiter()
    acquire = limiter.acquire
    measure(
        "limiter-acquire", "_native.Limiter.acquire", acquire, "tenant-acme", LIMITS.policy, 900
    )


def test_acquire_with_explicit_clock(measure: Measure) -> None:
    limiter = RateLimiter()
    measure(
        "limiter-acquire",
        "RateLimiter.acquire(now=)",
        lambda: limiter.acquire("t", LIMITS, 900, now=1.0),
    )
