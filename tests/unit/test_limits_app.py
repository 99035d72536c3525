"""Limits through `build_app` on the default memory backend, with the mock upstream in-process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sidegate.app import build_app
from sidegate.cli import main
from sidegate.mock_upstream import build_mock_app
from sidegate.settings import parse_settings

AppClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]

CONFIG = """
upstreams:
  mock: {{endpoints: ["{upstream}"]}}
  guarded: {{endpoints: ["{upstream}"], max_concurrent_requests: 1}}
  metered: {{endpoints: ["{upstream}"], rate_limit_rpm: 2}}
models:
  mock-gpt: {{upstream: mock, price_per_1k: {{input: 1.0, output: 1.0}}}}
  slow-lane: {{upstream: guarded, upstream_model: mock-gpt}}
  metered: {{upstream: metered, upstream_model: mock-gpt}}
plans:
  small: {{rpm: 3, tpm: 1000, max_concurrent: 1}}
  gold: {{tpm: 1000}}
  per-model: {{rpm: 100, models: {{mock-gpt: {{rpm: 2}}}}}}
  budgeted: {{daily_budget_usd: 0.01}}
tenants:
  acme: {{plan: small, keys: [sk-acme]}}
  gold: {{plan: gold, keys: [sk-gold]}}
  free: {{keys: [sk-free]}}
  modelled: {{plan: per-model, keys: [sk-modelled]}}
  thrifty: {{plan: budgeted, keys: [sk-thrifty]}}
cache: {{enabled: true, backend: memory}}
admin: {{token: admin-secret}}
"""


@pytest.fixture
async def upstream_url() -> AsyncIterator[str]:
    server = TestServer(build_mock_app())
    await server.start_server()
    yield str(server.make_url("/v1"))
    await server.close()


@pytest.fixture
async def gateway(aiohttp_client: AppClient, upstream_url: str) -> Client:
    return await aiohttp_client(build_app(parse_settings(CONFIG.format(upstream=upstream_url), {})))


async def _chat(
    client: Client, key: str, text: str, model: str = "mock-gpt", **extra: Any
) -> tuple[int, dict[str, str], Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    response = await client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    return response.status, dict(response.headers), await response.json()


async def _admin(client: Client, tenant: str) -> dict[str, Any]:
    response = await client.get(
        f"/admin/tenants/{tenant}", headers={"Authorization": "Bearer admin-secret"}
    )
    assert response.status == 200
    state: dict[str, Any] = await response.json()
    return state


async def _tokens_become(client: Client, tenant: str, expected: int) -> None:
    """Settling runs as its own task after the answer: wait for it (bounded)."""
    for _ in range(100):
        if (await _admin(client, tenant))["tokens"] == expected:
            return
        await asyncio.sleep(0.01)
    assert (await _admin(client, tenant))["tokens"] == expected


async def test_every_answer_carries_rate_limit_headers_and_the_fourth_is_refused(
    gateway: Client,
) -> None:
    seen = [await _chat(gateway, "sk-acme", f"hello {i}", max_tokens=5) for i in range(4)]
    assert [s for s, _, _ in seen] == [200, 200, 200, 429]
    assert [h["x-ratelimit-remaining-requests"] for _, h, _ in seen[:3]] == ["2", "1", "0"]
    headers = seen[0][1]
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    _, headers, body = seen[3]
    assert body["error"]["type"] == "requests"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert int(headers["Retry-After"]) >= 1
    assert int(headers["retry-after-ms"]) > 0


async def test_a_tenant_without_a_plan_is_not_limited(gateway: Client) -> None:
    statuses = [(await _chat(gateway, "sk-free", f"hi {i}"))[0] for i in range(6)]
    assert statuses == [200] * 6


async def test_a_request_too_large_for_the_tpm_is_refused_as_tokens(gateway: Client) -> None:
    status, headers, body = await _chat(gateway, "sk-gold", "hi", max_tokens=5000)
    assert status == 429
    assert body["error"]["type"] == "tokens"
    assert "too large" in body["error"]["message"]
    # No wait would let it through: the SDKs must not send it again.
    assert headers["x-should-retry"] == "false"
    assert "Retry-After" not in headers and "retry-after-ms" not in headers
    assert headers["x-ratelimit-limit-tokens"] == "1000"


async def test_a_cache_hit_gives_its_token_reservation_back(gateway: Client) -> None:
    status, headers, body = await _chat(
        gateway, "sk-gold", "cache me please", max_tokens=50, temperature=0
    )
    assert status == 200 and headers["x-cache"] == "miss"
    used = body["usage"]["total_tokens"]
    await _tokens_become(gateway, "gold", used)
    status, headers, _ = await _chat(
        gateway, "sk-gold", "cache me please", max_tokens=50, temperature=0
    )
    assert status == 200 and headers["x-cache"] == "hit"
    await _tokens_become(gateway, "gold", used)  # the hit used no upstream tokens
    state = await _admin(gateway, "gold")
    assert state["spent_usd"] == pytest.approx(used / 1000.0)


async def test_concurrency_limit_refuses_a_second_request_in_flight(gateway: Client) -> None:
    slow = asyncio.create_task(_chat(gateway, "sk-acme", "!sleep 600"))
    await asyncio.sleep(0.2)
    status, _, body = await _chat(gateway, "sk-acme", "meanwhile")
    assert status == 429
    assert "concurrent" in body["error"]["message"]
    assert (await slow)[0] == 200
    assert (await _chat(gateway, "sk-acme", "after"))[0] == 200


async def test_block_and_unblock_take_effect_at_once(gateway: Client) -> None:
    admin = {"Authorization": "Bearer admin-secret"}
    assert (await gateway.post("/admin/tenants/free/block")).status == 401
    assert (await gateway.post("/admin/tenants/free/block", headers=admin)).status == 200
    status, _, body = await _chat(gateway, "sk-free", "hi")
    assert status == 403
    assert body["error"]["code"] == "tenant_blocked"
    assert (await gateway.post("/admin/tenants/free/unblock", headers=admin)).status == 200
    assert (await _chat(gateway, "sk-free", "hi"))[0] == 200


async def test_upstream_concurrency_queues_briefly_then_answers_503(gateway: Client) -> None:
    first = asyncio.create_task(_chat(gateway, "sk-free", "!sleep 1500", model="slow-lane"))
    await asyncio.sleep(0.2)
    status, headers, body = await _chat(gateway, "sk-free", "queued", model="slow-lane")
    assert status == 503
    assert body["error"]["code"] == "upstream_busy"
    assert headers["Retry-After"] == "1"
    assert (await first)[0] == 200
    # A request that waits less than the bound gets the slot when it frees.
    first = asyncio.create_task(_chat(gateway, "sk-free", "!sleep 300", model="slow-lane"))
    await asyncio.sleep(0.1)
    assert (await _chat(gateway, "sk-free", "waits its turn", model="slow-lane"))[0] == 200
    assert (await first)[0] == 200


async def test_upstream_rate_limit_answers_429(gateway: Client) -> None:
    statuses = [(await _chat(gateway, "sk-free", f"m {i}", model="metered"))[0] for i in range(3)]
    assert statuses == [200, 200, 429]


def test_several_workers_on_memory_limits_are_refused_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(upstream="http://127.0.0.1:9/v1"))
    assert main(["serve", "--config", str(config), "--workers", "2"]) == 1
    assert "state.backend: redis" in capsys.readouterr().err


@pytest.mark.parametrize(("fail_open", "expected"), [(True, 200), (False, 503)])
async def test_unreachable_redis_fails_open_or_closed_as_configured(
    aiohttp_client: AppClient, upstream_url: str, fail_open: bool, expected: int
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # nothing listens here once the socket closes
    config = CONFIG.format(upstream=upstream_url) + (
        f'state: {{backend: redis, url: "redis://127.0.0.1:{dead}/0", '
        f"fail_open: {str(fail_open).lower()}}}\n"
    )
    client = await aiohttp_client(build_app(parse_settings(config, {})))
    statuses = [(await _chat(client, "sk-acme", f"hi {i}"))[0] for i in range(4)]
    if fail_open:
        assert statuses == [200, 200, 200, 429]  # the plan still holds, in this process
        metrics = await (await client.get("/metrics")).text()
        assert "llm_state_fallbacks_total 4.0" in metrics
    else:
        assert statuses == [expected] * 4


def test_check_config_refuses_several_workers_on_memory_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    text = CONFIG.format(upstream="http://127.0.0.1:9/v1")
    config.write_text("server: {workers: 4}\n" + text)
    assert main(["check-config", str(config)]) == 1
    assert "server.workers" in capsys.readouterr().err
    config.write_text("server: {workers: 4}\nstate: {backend: redis}\n" + text)
    assert main(["check-config", str(config)]) == 0


async def test_an_upstream_error_after_admission_still_carries_rate_limit_headers(
    gateway: Client,
) -> None:
    status, headers, body = await _chat(gateway, "sk-acme", "!status 503", max_tokens=5)
    assert status == 503
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "2"
    assert "error" in body


async def test_the_tightest_limit_speaks_in_the_headers_and_refuses(gateway: Client) -> None:
    seen = [await _chat(gateway, "sk-modelled", f"hi {i}") for i in range(3)]
    assert [status for status, _, _ in seen] == [200, 200, 429]
    # The plan allows 100 a minute; this model 2: the headers show the tighter one.
    assert [h["x-ratelimit-limit-requests"] for _, h, _ in seen[:2]] == ["2", "2"]
    assert [h["x-ratelimit-remaining-requests"] for _, h, _ in seen[:2]] == ["1", "0"]
    assert seen[2][2]["error"]["type"] == "requests"
    # Another model of the same plan is held by the plan's limit alone.
    status, headers, _ = await _chat(gateway, "sk-modelled", "hi", model="slow-lane")
    assert status == 200
    assert headers["x-ratelimit-limit-requests"] == "100"


async def test_spending_past_80_percent_alerts_once_and_the_budget_then_refuses(
    gateway: Client,
) -> None:
    status, _, _ = await _chat(gateway, "sk-thrifty", "spend it all", max_tokens=5)
    assert status == 200  # costs more than the whole $0.01 (prices are $1 per 1k tokens)
    status, headers, body = await _chat(gateway, "sk-thrifty", "and more", max_tokens=5)
    assert status == 429
    assert body["error"]["code"] == "insufficient_quota"
    assert headers["x-should-retry"] == "false"
    metrics = await (await gateway.get("/metrics")).text()
    assert 'llm_budget_remaining_usd{tenant="thrifty"} 0.0' in metrics
    assert 'llm_budget_alerts_total{tenant="thrifty"} 1.0' in metrics


@web.middleware
async def _openai_limits(request: web.Request, handler: Any) -> web.StreamResponse:
    """The upstream's own rate-limit headers, as OpenAI sends them."""
    response: web.StreamResponse = await handler(request)
    response.headers["x-ratelimit-remaining-requests"] = "4999"
    response.headers["X-RateLimit-Remaining-Tokens"] = "149000"
    return response


async def test_the_client_gets_the_gateways_limit_headers_never_the_upstreams(
    aiohttp_client: AppClient,
) -> None:
    mock = build_mock_app()
    mock.middlewares.append(_openai_limits)
    upstream = TestServer(mock)
    await upstream.start_server()
    try:
        config = CONFIG.format(upstream=upstream.make_url("/v1"))
        client = await aiohttp_client(build_app(parse_settings(config, {})))
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer sk-gold"},  # a tokens limit only
        )
        assert response.status == 200
        [remaining] = response.headers.getall("x-ratelimit-remaining-tokens")
        assert int(remaining) < 1000  # the gateway's, less this request's reservation
        assert response.headers["x-ratelimit-limit-tokens"] == "1000"
        # The plan sets no requests limit, and the upstream's own figure is the operator's
        # account, not the tenant's: it does not pass.
        assert "x-ratelimit-remaining-requests" not in response.headers
    finally:
        await upstream.close()
