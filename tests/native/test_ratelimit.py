"""The rate limiter from Python: all-or-nothing acquire, release and true-up, headers."""

from __future__ import annotations

import threading

import pytest

from sidegate.ratelimit import (
    Limits,
    RateLimiter,
    format_duration,
    rate_limit_headers,
    retry_after_headers,
)

PLAN = Limits(requests_per_minute=60, tokens_per_minute=1_000, max_concurrent=2)


def test_a_request_is_admitted_and_reported() -> None:
    limiter = RateLimiter()
    decision = limiter.acquire("acme", PLAN, 100, now=10.0)
    assert decision.allowed and decision.denied_by is None
    assert decision.requests == (60, 59, 1.0)
    assert decision.tokens == (1_000, 900, 6.0)
    assert rate_limit_headers(decision) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "6s",
    }


def test_a_denied_request_charges_nothing() -> None:
    limiter = RateLimiter()
    assert limiter.acquire("acme", PLAN, 950, now=0.0).allowed
    before = limiter.peek("acme", PLAN, now=0.0)
    denied = limiter.acquire("acme", PLAN, 100, now=0.0)
    assert (denied.allowed, denied.denied_by, denied.too_large) == (False, "tokens", False)
    assert denied.retry_after == pytest.approx(3.0)
    after = limiter.peek("acme", PLAN, now=0.0)
    assert (after.requests, after.tokens, after.in_flight) == (
        before.requests,
        before.tokens,
        before.in_flight,
    )
    assert retry_after_headers(denied) == {"Retry-After": "3", "retry-after-ms": "3000"}


def test_concurrency_frees_on_release_and_true_up_refunds() -> None:
    limiter = RateLimiter()
    for _ in range(2):
        assert limiter.acquire("k", PLAN, 300, now=0.0).allowed
    third = limiter.acquire("k", PLAN, 10, now=0.0)
    assert third.denied_by == "concurrency"
    assert retry_after_headers(third)["Retry-After"] == "1"
    limiter.release("k", PLAN, reserved_tokens=300, used_tokens=50, now=0.0)
    state = limiter.peek("k", PLAN, now=0.0)
    assert state.in_flight == 1
    assert state.tokens is not None and state.tokens[1] == 1_000 - 300 - 50
    limiter.true_up("k", PLAN, reserved_tokens=300, used_tokens=400, now=0.0)
    assert limiter.peek("k", PLAN, now=0.0).in_flight == 1
    assert limiter.acquire("k", PLAN, 10, now=0.0).allowed


def test_too_large_is_not_worth_retrying() -> None:
    denied = RateLimiter().acquire("k", PLAN, 5_000, now=0.0)
    assert denied.too_large and denied.denied_by == "tokens"


def test_keys_are_independent_and_idle_ones_are_forgotten() -> None:
    limiter = RateLimiter(max_keys=64)
    plan = Limits(requests_per_minute=1)
    for i in range(1_000):
        assert limiter.acquire(f"tenant-{i}", plan, now=float(i * 60)).allowed
    assert len(limiter) <= 64


def test_threads_never_over_admit() -> None:
    limiter = RateLimiter()
    plan = Limits(requests_per_minute=1_000)
    admitted: list[int] = []

    def hammer() -> None:
        admitted.append(sum(limiter.acquire("shared", plan, now=5.0).allowed for _ in range(600)))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 1_000


def test_the_default_clock_is_monotonic_and_usable() -> None:
    limiter = RateLimiter()
    plan = Limits(requests_per_minute=2, burst=1)
    assert limiter.acquire("k", plan).allowed
    denied = limiter.acquire("k", plan)
    assert not denied.allowed and 0 < denied.retry_after <= 30


@pytest.mark.parametrize("bad", [{"requests_per_minute": 0}, {"burst": -1}])
def test_limits_must_be_positive(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Limits(**bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0ms"), (0.0121, "13ms"), (1, "1s"), (1.5, "1.5s"), (360, "6m0s"), (3723.5, "1h2m3.5s")],
)
def test_durations_are_written_like_openai(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_acquire_all_is_all_or_nothing_across_keys() -> None:
    limiter = RateLimiter()
    tenant = Limits(requests_per_minute=100, tokens_per_minute=10_000)
    model = Limits(requests_per_minute=1)
    asks = [("acme", tenant, 500), ("acme\x1fgpt-4o", model, 0)]
    refused, decisions = limiter.acquire_all(asks, now=0.0)
    assert refused is None and all(d.allowed for d in decisions)
    refused, decisions = limiter.acquire_all(asks, now=0.0)
    assert refused == 1 and decisions[1].denied_by == "requests"
    assert decisions[1].retry_after == pytest.approx(60.0)
    tenant_state = limiter.peek("acme", tenant, now=0.0)
    assert tenant_state.requests == (100, 99, 0.6)
    assert tenant_state.tokens is not None and tenant_state.tokens[1] == 9_500
