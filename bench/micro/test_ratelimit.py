"""Rate-limit acquire from Python: requests, tokens and concurrency in one call."""

from __future__ import annotations

from types import SimpleNamespace

from conftest import Measure
from sidegate import _native
from sidegate._native import LimitTicket
from sidegate.limits.local import Shapes
from sidegate.limits.memory import MemoryState
from sidegate.ratelimit import Limits, RateLimiter
from sidegate.settings import ModelLimitSettings, PlanSettings

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


def test_memory_backend_request(measure: Measure) -> None:
    """What one request costs the memory backend: admit (headers included) and settle."""
    huge = 10**9
    plan = PlanSettings(
        rpm=huge, tpm=huge, max_concurrent=huge, models={"gpt-4o": ModelLimitSettings(rpm=huge)}
    )
    shapes = Shapes(MemoryState())
    memory, shape = shapes.memory, shapes.get(plan, "gpt-4o")

    spent = SimpleNamespace(
        upstream="up", cache="miss", input_tokens=700, output_tokens=0, cost_usd=0.001
    )

    def one_request() -> None:
        ticket = memory.admit("acme", shape, 900, None)
        assert isinstance(ticket, LimitTicket)
        ticket.settle(spent)

    measure("limits-request", "memory admit+settle", one_request)
