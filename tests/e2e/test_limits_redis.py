"""Limits and budgets across three real `sidegate serve` replicas sharing one real redis-server.

The point of the Redis backend: a limit holds across every replica at once, instead of
becoming limit x replicas. Traffic is sent round-robin with the official openai SDK.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.e2e.procs import Process, RedisServer, http_get, metric_value

ADMIN = "admin-token-for-tests"
CONFIG = """
upstreams:
  local: {{provider: openai, endpoints: ["{upstream}/v1"]}}
models:
  gpt-4o-mini:
    upstream: local
    upstream_model: mock-gpt
    price_per_1k: {{input: 1.0, output: 1.0}}
plans:
  thirty: {{rpm: 30}}
  tokens: {{tpm: 6000}}
  tiny: {{daily_budget_usd: 0.05}}
tenants:
  rpm-tenant: {{plan: thirty, keys: ["sk-rpm"]}}
  tpm-tenant: {{plan: tokens, keys: ["sk-tpm"]}}
  budget-tenant: {{plan: tiny, keys: ["sk-budget"]}}
state: {{backend: redis, url: "{redis}"}}
cache: {{enabled: false}}
admin: {{token: "{admin}"}}
"""


@pytest.fixture
def replicas(
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
    mock_upstream: Process,
    redis_server: RedisServer,
) -> list[Process]:
    config = write_config(
        CONFIG.format(upstream=mock_upstream.url, redis=redis_server.url, admin=ADMIN)
    )
    return [spawn("serve", "--config", str(config)) for _ in range(3)]


@pytest.fixture
def clients(replicas: list[Process]) -> Iterator[Callable[[str], list[openai.OpenAI]]]:
    stack = ExitStack()

    def make(key: str) -> list[openai.OpenAI]:
        return [
            stack.enter_context(openai.OpenAI(base_url=r.url + "/v1", api_key=key, max_retries=0))
            for r in replicas
        ]

    with stack:
        yield make


def _ask(client: openai.OpenAI, text: str, **extra: Any) -> tuple[int, dict[str, str], Any]:
    """(status, headers, parsed body or error body) of one chat completion."""
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}], **extra
        )
    except openai.APIStatusError as error:
        return error.status_code, dict(error.response.headers), error.body
    return raw.status_code, dict(raw.headers), raw.parse()


def _admin_state(replica: Process, tenant: str) -> dict[str, Any]:
    status, body = http_get(
        f"{replica.url}/admin/tenants/{tenant}", {"Authorization": f"Bearer {ADMIN}"}
    )
    assert status == 200, body
    state: dict[str, Any] = orjson.loads(body)
    return state


def _until(check: Callable[[], bool], what: str) -> None:
    """Wait for a state that settles in the background (bounded; not a timing assertion)."""
    for _ in range(200):
        if check():
            return
        time.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


def test_a_30_rpm_plan_admits_30_across_three_replicas(
    clients: Callable[[str], list[openai.OpenAI]],
) -> None:
    sdks = clients("sk-rpm")
    started = time.monotonic()
    outcomes = [_ask(sdks[i % 3], f"request {i}") for i in range(90)]
    elapsed = time.monotonic() - started
    admitted = [o for o in outcomes if o[0] == 200]
    refused = [o for o in outcomes if o[0] == 429]
    assert len(admitted) + len(refused) == 90
    # 30 at once, plus what refilled at 0.5 request/s while the test ran; never 3 x 30.
    allowance = int(elapsed * 30 / 60) + 1
    assert 30 <= len(admitted) <= 30 + allowance, (len(admitted), elapsed)
    assert {i % 3 for i, o in enumerate(outcomes) if o[0] == 200} == {0, 1, 2}
    _, headers, body = refused[0]
    assert body["type"] == "requests"
    assert body["code"] == "rate_limit_exceeded"
    assert int(headers["retry-after"]) >= 1
    assert int(headers["retry-after-ms"]) > 0
    assert headers["x-ratelimit-limit-requests"] == "30"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    first = admitted[0][1]
    assert first["x-ratelimit-limit-requests"] == "30"
    assert first["x-ratelimit-remaining-requests"] == "29"


def test_a_tiny_daily_budget_stops_every_replica(
    replicas: list[Process], clients: Callable[[str], list[openai.OpenAI]]
) -> None:
    sdks = clients("sk-budget")
    spent_out = False
    for i in range(40):
        status, _, body = _ask(sdks[i % 3], f"spend some money {i}")
        if status == 429:
            assert body["code"] == "insufficient_quota"
            spent_out = True
            break
        assert status == 200
    assert spent_out
    _until(lambda: _admin_state(replicas[0], "budget-tenant")["spent_usd"] >= 0.05, "spent")
    for sdk in sdks:
        status, headers, body = _ask(sdk, "one more")
        assert status == 429
        assert body["code"] == "insufficient_quota"
        assert body["type"] == "insufficient_quota"
        assert headers["x-should-retry"] == "false"
        assert int(headers["retry-after"]) >= 1
    # Crossing 80 % of the budget is reported once, by whichever replica crossed it.
    alerts = 0.0
    for replica in replicas:
        _, text = http_get(replica.url + "/metrics")
        found = metric_value(text.decode(), "llm_budget_alerts_total", tenant="budget-tenant")
        alerts += found or 0
    assert alerts == 1
    events = [
        line
        for replica in replicas
        for line in replica.output().splitlines()
        if '"event":"budget_threshold"' in line.replace(" ", "")
    ]
    assert len(events) == 1
    _, text = http_get(replicas[1].url + "/metrics")
    remaining = metric_value(text.decode(), "llm_budget_remaining_usd", tenant="budget-tenant")
    assert remaining == 0.0


def test_tpm_reservation_and_true_up_are_exact_for_a_stream(
    replicas: list[Process], clients: Callable[[str], list[openai.OpenAI]]
) -> None:
    sdks = clients("sk-tpm")
    with sdks[0].chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "count these seven words for me please"}],
        max_tokens=100,
        stream=True,
        stream_options={"include_usage": True},
    ) as raw:
        headers = raw.headers
        chunks = list(raw.parse())
    usage = chunks[-1].usage
    assert usage is not None
    reserved = usage.prompt_tokens + 100
    # The bucket started full; admission took exactly the prompt plus max_tokens.
    assert headers["x-ratelimit-limit-tokens"] == "6000"
    assert headers["x-ratelimit-remaining-tokens"] == str(6000 - reserved)
    # At the end the reservation is trued up to what was really used, to the token.
    used = usage.prompt_tokens + usage.completion_tokens
    _until(lambda: _admin_state(replicas[2], "tpm-tenant")["tokens"] == used, "true-up")
    # A stream cut by the upstream is charged for what it relayed, no more.
    with sdks[1].chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "!drop 3 one two three four five six"}],
        max_tokens=50,
        stream=True,
    ) as stream:
        with pytest.raises(openai.APIError):
            list(stream)
    _until(lambda: _admin_state(replicas[0], "tpm-tenant")["tokens"] > used, "cut stream charged")

    def cut_lines() -> list[dict[str, Any]]:
        return [
            orjson.loads(line)
            for line in replicas[1].output().splitlines()
            if line.startswith("{") and '"tenant":"tpm-tenant"' in line and '"status"' in line
        ]

    # The access line is written at the end of the loop turn, possibly after the settle landed.
    _until(lambda: bool(cut_lines()), "cut stream logged")
    cut_line = cut_lines()[0]
    cut = cut_line["input_tokens"] + cut_line["output_tokens"]
    assert cut_line["output_tokens"] < 50
    _until(lambda: _admin_state(replicas[0], "tpm-tenant")["tokens"] == used + cut, "exact")


def test_traffic_flows_while_redis_is_down_and_limits_resume_when_it_returns(
    replicas: list[Process],
    clients: Callable[[str], list[openai.OpenAI]],
    redis_server: RedisServer,
) -> None:
    sdks = clients("sk-rpm")
    assert all(_ask(sdks[i % 3], f"before {i}")[0] == 200 for i in range(6))
    redis_server.stop()
    during = [_ask(sdks[i % 3], f"during {i}")[0] for i in range(9)]
    assert during == [200] * 9  # fail open: local limits, nothing refused
    for replica in replicas:
        _, text = http_get(replica.url + "/metrics")
        assert (metric_value(text.decode(), "llm_state_fallbacks_total") or 0) >= 1
        assert "state_backend_down" in replica.output()
    redis_server.start()  # a fresh, empty Redis: limits start full again
    time.sleep(1.2)  # each replica tries Redis again one second after its last failure
    started = time.monotonic()
    after = [_ask(sdks[i % 3], f"after {i}")[0] for i in range(60)]
    allowance = int((time.monotonic() - started) * 30 / 60) + 1
    assert 30 <= after.count(200) <= 30 + allowance
    assert after.count(429) == 60 - after.count(200)


def test_a_block_reaches_every_replica(
    replicas: list[Process], clients: Callable[[str], list[openai.OpenAI]]
) -> None:
    sdks = clients("sk-rpm")
    assert _ask(sdks[0], "hello")[0] == 200
    status, body = _post(replicas[1], "/admin/tenants/rpm-tenant/block", ADMIN)
    assert status == 200 and orjson.loads(body)["blocked"] is True
    for sdk in sdks:
        status, _, error = _ask(sdk, "hello again")
        assert status == 403
        assert error["code"] == "tenant_blocked"
    assert _post(replicas[0], "/admin/tenants/rpm-tenant/unblock", "wrong-token")[0] == 401
    assert _post(replicas[0], "/admin/tenants/rpm-tenant/unblock", ADMIN)[0] == 200
    assert all(_ask(sdk, "back")[0] == 200 for sdk in sdks)


def _post(replica: Process, path: str, token: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        replica.url + path, method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_block_and_a_spent_budget_hold_on_every_replica_while_redis_is_down(
    replicas: list[Process],
    clients: Callable[[str], list[openai.OpenAI]],
    redis_server: RedisServer,
) -> None:
    """Fail-open decides locally in an outage; what each replica last heard from Redis of a
    tenant's day (blocked, spent) must hold there, not start over from nothing."""
    blocked, broke = clients("sk-rpm"), clients("sk-budget")
    assert _post(replicas[1], "/admin/tenants/rpm-tenant/block", ADMIN)[0] == 200
    assert all(_ask(sdk, "blocked?")[0] == 403 for sdk in blocked)
    for i in range(40):
        if _ask(broke[i % 3], f"spend some money {i}")[0] == 429:
            break
    _until(lambda: _admin_state(replicas[0], "budget-tenant")["spent_usd"] >= 0.05, "spent")
    assert all(_ask(sdk, "one more")[0] == 429 for sdk in broke)
    redis_server.stop()
    for _ in range(2):
        assert [_ask(sdk, "during the outage")[0] for sdk in blocked] == [403] * 3
        assert [_ask(sdk, "during the outage")[0] for sdk in broke] == [429] * 3
    assert all("state_backend_down" in replica.output() for replica in replicas)
