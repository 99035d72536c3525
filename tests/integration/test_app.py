"""`build_app(settings)` through aiohttp's test client, against the mock upstream in-process."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sidegate.app import build_app
from sidegate.lifecycle import YOUNG_THRESHOLD
from sidegate.mock_upstream import build_mock_app
from sidegate.settings import parse_settings

AppClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def upstream_url() -> str:
    server = TestServer(build_mock_app())
    await server.start_server()
    yield str(server.make_url("/v1"))
    await server.close()


@pytest.fixture
async def gateway(
    aiohttp_client: AppClient, upstream_url: str
) -> TestClient[web.Request, web.Application]:
    settings = parse_settings(
        f"""
        upstreams:
          mock: {{endpoints: ["{upstream_url}"], api_key: sk-up}}
        models:
          alias: {{upstream: mock, upstream_model: mock-gpt, fallbacks: [other]}}
          other: {{upstream: mock}}
        tenants:
          acme: {{keys: [sk-client]}}
        """,
        {},
    )
    return await aiohttp_client(build_app(settings))


AUTH = {"Authorization": "Bearer sk-client"}


async def test_chat_through_an_alias(gateway: TestClient[web.Request, web.Application]) -> None:
    body = {"model": "alias", "messages": [{"role": "user", "content": "hi there"}]}
    response = await gateway.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status == 200
    payload = await response.json()
    assert payload["choices"][0]["message"]["content"] == "hi there"
    # The upstream saw its own model name.
    assert payload["model"] == "mock-gpt"


async def test_health_ready_and_metrics(gateway: TestClient[web.Request, web.Application]) -> None:
    assert (await gateway.get("/health")).status == 200
    assert (await gateway.get("/ready")).status == 200
    metrics = await gateway.get("/metrics")
    assert "llm_requests_total" in await metrics.text() or metrics.status == 200


async def test_unknown_path_and_method_are_openai_shaped(
    gateway: TestClient[web.Request, web.Application],
) -> None:
    missing = await gateway.get("/v1/nothing-here", headers=AUTH)
    assert missing.status == 404
    assert (await missing.json())["error"]["type"] == "invalid_request_error"
    wrong = await gateway.get("/v1/chat/completions", headers=AUTH)
    assert wrong.status == 405
    assert set((await wrong.json())["error"]) == {"message", "type", "param", "code"}


async def test_every_error_carries_the_request_id(
    gateway: TestClient[web.Request, web.Application],
) -> None:
    response = await gateway.post(
        "/v1/chat/completions", data=b"{", headers={**AUTH, "x-request-id": "abc-123"}
    )
    assert response.status == 400
    assert response.headers["x-request-id"] == "abc-123"
    assert response.headers["x-cache"] == "miss"
    assert orjson.loads(await response.read())["error"]["type"] == "invalid_request_error"


async def test_ready_turns_503_while_draining(
    gateway: TestClient[web.Request, web.Application],
) -> None:
    from sidegate.keys import LIFECYCLE_KEY

    gateway.app[LIFECYCLE_KEY].draining = True
    assert (await gateway.get("/ready")).status == 503


async def test_start_up_objects_are_frozen_while_serving(
    gateway: TestClient[web.Request, web.Application],
) -> None:
    # A full collection would otherwise walk start-up's objects again, and young collections
    # would catch requests in flight: both pause every request on the loop meanwhile.
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    answer = await gateway.post(
        "/v1/chat/completions",
        json={"model": "alias", "messages": [{"role": "user", "content": "hi"}]},
        headers=AUTH,
    )
    assert answer.status == 200
    await gateway.close()
    assert gc.get_freeze_count() == 0  # given back at clean-up
    assert gc.get_threshold()[0] != YOUNG_THRESHOLD
