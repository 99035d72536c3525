"""What the cache stores from upstreams that stream in ways the mock never does: no usage chunk
even when asked, an error event followed by `[DONE]`, a finish without `[DONE]`.

The odd upstream is a real aiohttp server in the test's own event loop; the gateway is a real
process; the client is the openai SDK.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import openai
import orjson
import pytest
from aiohttp import web

from tests.e2e.procs import Process

CONFIG = """
upstreams:
  odd: {{provider: openai, endpoints: ["http://127.0.0.1:{port}/v1"], timeout_seconds: 5}}
models:
  gpt-4o-mini: {{upstream: odd}}
auth: {{mode: none}}
cache: {{backend: memory}}
"""


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-odd",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "odd-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    text = body["messages"][-1]["content"]
    request.app[CALLS][text] += 1
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_chunk({"role": "assistant", "content": ""}))
    await response.write(_chunk({"content": text}))
    if text.startswith("error"):
        error = {"error": {"message": "overloaded", "type": "api_error", "code": None}}
        await response.write(b"data: " + orjson.dumps(error) + b"\n\n")
    else:
        await response.write(_chunk({}, "stop"))
    if not text.startswith("no done"):
        await response.write(b"data: [DONE]\n\n")  # never a usage chunk, even when asked
    await response.write_eof()
    return response


CALLS = web.AppKey("calls", Counter[str])


@pytest.fixture
async def odd_upstream() -> AsyncIterator[tuple[int, Counter[str]]]:
    app = web.Application()
    app[CALLS] = Counter()
    app.router.add_post("/v1/chat/completions", _chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield sock.getsockname()[1], app[CALLS]
    finally:
        await runner.cleanup()


@pytest.fixture
async def client(
    odd_upstream: tuple[int, Counter[str]],
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
) -> AsyncIterator[openai.AsyncOpenAI]:
    gateway = spawn("serve", "--config", str(write_config(CONFIG.format(port=odd_upstream[0]))))
    async with openai.AsyncOpenAI(
        base_url=gateway.url + "/v1", api_key="unused", max_retries=0
    ) as sdk:
        yield sdk


async def _stream(client: openai.AsyncOpenAI, text: str) -> tuple[str, str]:
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": text}],
        temperature=0,
        stream=True,
    )
    async with raw.parse() as stream:
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    return raw.headers["x-cache"], "".join(parts)


async def test_an_answer_without_usage_is_stored_with_the_counted_usage(
    client: openai.AsyncOpenAI, odd_upstream: tuple[int, Counter[str]]
) -> None:
    text = "usage never reported"
    assert await _stream(client, text) == ("miss", text)
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], temperature=0
    )
    whole = raw.parse()
    assert raw.headers["x-cache"] == "hit"
    assert whole.choices[0].message.content == text
    assert whole.usage is not None and whole.usage.completion_tokens > 0
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    assert odd_upstream[1][text] == 1


@pytest.mark.parametrize("text", ["error after content", "no done after the finish"])
async def test_a_stream_that_did_not_end_cleanly_is_not_stored(
    client: openai.AsyncOpenAI, odd_upstream: tuple[int, Counter[str]], text: str
) -> None:
    for _ in range(2):
        try:
            cache, _ = await _stream(client, text)
        except openai.APIError:
            continue  # the error reached the client: that is fine, as long as it is not cached
        assert cache == "miss"
    assert odd_upstream[1][text] == 2
