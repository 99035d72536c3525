"""The two state backends keep the same semantics: memory (native table) and Redis (Lua).

Each test runs against both: the in-process table and a real redis-server on a free port.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from tests.e2e.procs import RedisServer

from sidegate._native import LimitTicket, RequestFacts
from sidegate.admission import Ticket
from sidegate.auth import Tenant
from sidegate.errors import ProxyError
from sidegate.exchange import Exchange
from sidegate.limits.failover import Backend, Direct
from sidegate.limits.gate import LimitAdmission
from sidegate.limits.headers import admitted_headers, duration
from sidegate.limits.local import Shapes
from sidegate.limits.memory import MemoryState
from sidegate.limits.model import Acquire, Bucket, Release, Slot
from sidegate.limits.policy import buckets, slots
from sidegate.limits.redis_state import RedisState
from sidegate.limits.telemetry import build_limit_metrics
from sidegate.observability.metrics import build_metrics
from sidegate.routing import Candidate
from sidegate.settings import ModelLimitSettings, PlanSettings, StateSettings


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield MemoryState()
        return
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    state = RedisState(StateSettings(backend="redis", url=server.url))
    try:
        yield state
    finally:
        await state.close()
        server.stop()


PLAN = PlanSettings(rpm=5, tpm=100, max_concurrent=2, daily_budget_usd=1.0)


def _acquire(tenant: str, request_id: str, tokens: int, plan: PlanSettings = PLAN) -> Acquire:
    return Acquire(
        tenant,
        request_id,
        buckets(plan, "m", tokens),
        slots(plan, "m"),
        plan.daily_budget_usd,
        tokens,
    )


def _release(acquired: Acquire, used: int, cost: float = 0.0, plan: PlanSettings = PLAN) -> Release:
    delta = used - acquired.reserved_tokens
    return Release(
        acquired.tenant,
        acquired.request_id,
        tuple(
            Bucket(b.key, b.kind, b.capacity, b.per_minute, delta if b.kind == "tokens" else 0)
            for b in acquired.buckets
        ),
        acquired.slots,
        cost,
        delta,
    )


async def test_a_refusal_charges_nothing(backend: Backend) -> None:
    first = _acquire("t", "r1", 80)
    assert (await backend.acquire(first)).admitted
    await backend.release(_release(first, 80))
    refused = await backend.acquire(_acquire("t", "r2", 30))
    assert refused.refused == "tokens"
    assert refused.retry_after_ms > 0
    # The refused request took no request from the 5-per-minute bucket.
    admitted = 0
    for i in range(8):
        decision = await backend.acquire(_acquire("t", f"q{i}", 0))
        if decision.admitted:
            admitted += 1
            await backend.release(_release(_acquire("t", f"q{i}", 0), 0))
        else:
            assert decision.refused == "requests"
    assert admitted == 4  # 5 in all, the first included


async def test_headers_figures_come_from_the_charge(backend: Backend) -> None:
    decision = await backend.acquire(_acquire("t", "r1", 30))
    assert decision.admitted
    requests, tokens = decision.levels
    assert int(requests.remaining) == 4
    assert int(tokens.remaining) == 70
    assert 0 < requests.reset_ms <= 12_000
    assert 0 < tokens.reset_ms <= 18_000


async def test_concurrency_slots_are_taken_and_given_back(backend: Backend) -> None:
    first, second = _acquire("t", "a", 0), _acquire("t", "b", 0)
    assert (await backend.acquire(first)).admitted
    assert (await backend.acquire(second)).admitted
    assert (await backend.acquire(_acquire("t", "c", 0))).refused == "concurrency"
    await backend.release(_release(first, 0))
    assert (await backend.acquire(_acquire("t", "d", 0))).admitted


async def test_true_up_turns_extra_usage_into_debt_and_counts_exactly(backend: Backend) -> None:
    first = _acquire("t", "a", 50)
    assert (await backend.acquire(first)).admitted
    await backend.release(_release(first, 90))  # the answer used 40 more than reserved
    assert (await backend.acquire(_acquire("t", "b", 20))).refused == "tokens"
    assert (await backend.acquire(_acquire("t", "c", 5))).admitted
    assert (await backend.state("t")).tokens == 95


async def test_budget_is_refused_once_spent(backend: Backend) -> None:
    first = _acquire("t", "a", 0)
    assert (await backend.acquire(first)).admitted
    assert await backend.release(_release(first, 0, cost=0.6)) == pytest.approx(0.6)
    second = _acquire("t", "b", 0)
    assert (await backend.acquire(second)).admitted  # 0.6 < 1.0: not spent yet
    assert await backend.release(_release(second, 0, cost=0.5)) == pytest.approx(1.1)
    refused = await backend.acquire(_acquire("t", "c", 0))
    assert refused.refused == "budget"
    assert refused.spent_usd == pytest.approx(1.1)
    assert 0 < refused.retry_after_ms <= 86_400_000
    assert (await backend.state("t")).spent_usd == pytest.approx(1.1)
    assert (await backend.acquire(_acquire("other", "d", 0))).admitted  # per tenant


async def test_blocked_tenant_is_refused_until_unblocked(backend: Backend) -> None:
    await backend.set_blocked("t", True)
    assert (await backend.acquire(_acquire("t", "a", 0))).refused == "blocked"
    assert (await backend.state("t")).blocked
    assert (await backend.acquire(_acquire("u", "b", 0))).admitted
    await backend.set_blocked("t", False)
    assert (await backend.acquire(_acquire("t", "c", 0))).admitted


async def test_per_model_limits_hold_beside_the_tenants(backend: Backend) -> None:
    plan = PlanSettings.model_validate({"rpm": 10, "models": {"m": {"rpm": 2}}})
    results = [(await backend.acquire(_acquire("t", f"r{i}", 0, plan))) for i in range(3)]
    assert [r.admitted for r in results] == [True, True, False]
    assert results[2].refused == "requests"
    other = Acquire("t", "x", buckets(plan, "other", 0), (), None, 0)
    decision = await backend.acquire(other)
    assert decision.admitted
    assert int(decision.levels[0].remaining) == 7  # the tenant's 10, three taken before


async def test_a_request_larger_than_the_bucket_is_refused(backend: Backend) -> None:
    assert (await backend.acquire(_acquire("t", "a", 101))).refused == "tokens"


def reservation(prompt_tokens: int, max_tokens: int | None, n: int) -> int:
    facts = RequestFacts("m", False, False, max_tokens, n, None, prompt_tokens, None)
    return facts.reservation


def test_reservation_is_prompt_plus_max_tokens_per_choice() -> None:
    assert reservation(12, 100, 1) == 112
    assert reservation(12, 100, 3) == 312
    assert reservation(12, None, 2) == 12
    assert reservation(12, 100, 0) == 112  # one choice at least
    # Exact at the fields' widest, as Python's ints would be.
    big = 2**63 - 1
    assert reservation(big, big, big) == big + big * big


def test_burst_caps_the_requests_bucket() -> None:
    plan = PlanSettings(rpm=60, burst=5)
    (bucket,) = buckets(plan, "m", 0)
    assert bucket.capacity == 5
    assert bucket.per_minute == 60
    assert buckets(PlanSettings(rpm=60), "m", 0)[0].capacity == 60


def test_slots_per_tenant_and_per_model() -> None:
    plan = PlanSettings.model_validate(
        {"max_concurrent": 3, "models": {"m": {"max_concurrent": 1}}}
    )
    assert slots(plan, "m") == (Slot("conc", 3), Slot("conc:m", 1))
    assert slots(plan, "n") == (Slot("conc", 3),)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0ms"),
        (12, "12ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (360_000, "6m0s"),
        (3_723_000, "1h2m3s"),
    ],
)
def test_durations_are_spelled_like_openai(ms: int, text: str) -> None:
    assert duration(ms) == text


@pytest.mark.parametrize(
    "plan",
    [
        PLAN,
        PlanSettings(rpm=3),
        PlanSettings(tpm=50, max_concurrent=1),
        PlanSettings(rpm=6, tpm=200, models={"m": ModelLimitSettings(rpm=2, tpm=120)}),
        PlanSettings(models={"m": ModelLimitSettings(max_concurrent=1)}, daily_budget_usd=0.5),
    ],
    ids=["tenant", "requests-only", "tokens-and-slots", "tenant-and-model", "model-slots"],
)
def test_the_one_call_path_answers_as_the_general_path(plan: PlanSettings) -> None:
    """The memory backend charges a plan's shape and writes its headers in the table (the
    request path's `limits.local`); every answer matches the general path's."""
    shapes, general = Shapes(MemoryState()), MemoryState()
    shape = shapes.get(plan, "m")
    for index, used in enumerate([10, 0, 40, 5, 70, 1, 30, 2]):
        reserve = 25
        answer = shapes.memory.admit("t", shape, reserve, plan.daily_budget_usd)
        request = _acquire("t", f"r{index}", reserve, plan)
        expected = general.acquire_now(request)
        assert isinstance(answer, LimitTicket) == expected.admitted
        if not isinstance(answer, LimitTicket):
            assert answer.refused == expected.refused
            assert answer.refused_index == expected.refused_index
            assert answer.spent_usd == pytest.approx(expected.spent_usd)
            continue
        headers = answer.headers
        wanted = admitted_headers(request.buckets, expected.levels)
        assert _without_resets(headers) == _without_resets(wanted)
        assert headers.keys() == wanted.keys()
        if index % 2:  # every other request stays in flight
            continue
        answer.settle(
            SimpleNamespace(
                upstream="up", cache="miss", input_tokens=used, output_tokens=0, cost_usd=0.3
            )
        )
        general.release_now(_release(request, used, 0.3, plan))


def _without_resets(headers: dict[str, str]) -> dict[str, str]:
    """Resets are read off each table's own clock, a few microseconds apart."""
    return {name: value for name, value in headers.items() if "-reset-" not in name}


def _spent(tokens: int, cost: float, *, upstream: str = "up", cache: str = "miss") -> object:
    return SimpleNamespace(
        upstream=upstream, cache=cache, input_tokens=tokens, output_tokens=0, cost_usd=cost
    )


async def test_a_ticket_settles_once_and_a_hit_spends_nothing() -> None:
    """The memory backend's ticket frees its slot and adds its cost on the first `settle`
    only; an answer from the cache, or one that never came, spends neither tokens nor money."""
    plan = PlanSettings(max_concurrent=1, daily_budget_usd=10.0)
    shapes = Shapes(MemoryState())
    memory, shape = shapes.memory, shapes.get(plan, "m")
    ticket = memory.admit("t", shape, 40, plan.daily_budget_usd)
    assert isinstance(ticket, LimitTicket)
    assert not isinstance(memory.admit("t", shape, 40, plan.daily_budget_usd), LimitTicket)
    ticket.settle(_spent(30, 0.5))
    ticket.settle(_spent(30, 0.5))
    state = await memory.state("t")
    assert (state.spent_usd, state.tokens) == (0.5, 30)
    for spent in (_spent(99, 3.0, cache="hit"), _spent(99, 3.0, upstream="-")):
        again = memory.admit("t", shape, 40, plan.daily_budget_usd)
        assert isinstance(again, LimitTicket)
        again.settle(spent)
    state = await memory.state("t")
    assert (state.spent_usd, state.tokens) == (0.5, 30)
    assert memory.budgets() == [("t", 10.0, 0.5)]


def test_the_budget_alert_fires_once_when_a_settle_crosses_80_percent() -> None:
    plan = PlanSettings(daily_budget_usd=1.0)
    shapes = Shapes(MemoryState())
    memory, shape = shapes.memory, shapes.get(plan, "m")
    alerts: list[tuple[str, float, float, float]] = []

    def on_alert(tenant: str, cost: float, budget: float, spent: float) -> None:
        alerts.append((tenant, cost, budget, spent))

    for cost in (0.5, 0.25, 0.125):
        ticket = memory.admit("t", shape, 0, plan.daily_budget_usd, on_alert)
        assert isinstance(ticket, LimitTicket)
        ticket.settle(_spent(1, cost))
    assert alerts == [("t", 0.125, 1.0, 0.875)]


def _admission() -> LimitAdmission:
    metrics = build_metrics()
    limit_metrics = build_limit_metrics(metrics.registry)
    return LimitAdmission(Direct(MemoryState()), metrics, limit_metrics, blocking=False)


def _admit(admission: LimitAdmission, tenant: Tenant, model: str = "m") -> Ticket | None:
    exchange = Exchange("r", tenant, "chat", 0.0, model)
    facts = RequestFacts(model, False, False, 10, 1, None, 5, None)
    return admission.admit_now(exchange, facts, cast(Candidate, None))


def test_the_request_paths_admission_follows_each_plan_and_model() -> None:
    admission = _admission()
    one_a_minute = PlanSettings(rpm=1)
    acme = Tenant("acme", one_a_minute, None)
    assert isinstance(_admit(admission, acme), LimitTicket)
    with pytest.raises(ProxyError) as refused:
        _admit(admission, acme)
    assert refused.value.status == 429
    # The plan's rpm is the tenant's, whichever model it asks for.
    with pytest.raises(ProxyError):
        _admit(admission, acme, "other")
    # A plan-less tenant passes free, with no limit headers.
    free = _admit(admission, Tenant("free", None, None))
    assert free is not None and free.header_lines == b""
    # A reloaded plan is a new object: it is read afresh, not taken for the one before.
    reloaded = Tenant("acme", PlanSettings(rpm=1000), None)
    assert isinstance(_admit(admission, reloaded), LimitTicket)
