"""The mock upstream in-process, through aiohttp's test server and client (real sockets)."""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import struct
import time
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from sidegate.mock.steering import parse_steering
from sidegate.mock_upstream import MOCK_MODELS, build_mock_app
from sidegate.tokens import Tokenizer

MIXED = "Grüße aus Köln 🙂🙂 日本語のテキスト, and plain words."


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> TestClient[Any, Any]:
    return await aiohttp_client(build_mock_app())


def chat(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "mock-gpt", "messages": [{"role": "user", "content": content}], **extra}


async def post(client: TestClient[Any, Any], path: str, body: Any) -> tuple[int, Any]:
    response = await client.post(path, data=orjson.dumps(body))
    return response.status, orjson.loads(await response.read())


async def events(response: aiohttp.ClientResponse) -> list[Any]:
    """Every SSE `data:` payload, parsed; `[DONE]` stays a string."""
    assert response.headers["Content-Type"].startswith("text/event-stream")
    found: list[Any] = []
    async for line in response.content:
        if line.startswith(b"data: "):
            data = line[len(b"data: ") :].strip()
            found.append(data.decode() if data == b"[DONE]" else orjson.loads(data))
    return found


async def stream(client: TestClient[Any, Any], path: str, body: Any) -> list[Any]:
    response = await client.post(path, data=orjson.dumps({**body, "stream": True}))
    assert response.status == 200
    return await events(response)


def contents(chunks: list[Any]) -> list[str]:
    """The content deltas of chat chunks (the role chunk's empty content excluded)."""
    return [
        choice["delta"]["content"]
        for chunk in chunks
        if isinstance(chunk, dict)
        for choice in chunk["choices"]
        if "content" in choice["delta"] and "role" not in choice["delta"]
    ]


async def test_health_and_models(client: TestClient[Any, Any]) -> None:
    health = await client.get("/health")
    assert health.status == 200
    models = await client.get("/v1/models")
    body = orjson.loads(await models.read())
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == list(MOCK_MODELS)
    assert all(m["object"] == "model" and m["owned_by"] for m in body["data"])


async def test_chat_echoes_last_user_message_with_exact_usage(
    client: TestClient[Any, Any],
) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": MIXED},
    ]
    status, body = await post(
        client, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": messages}
    )
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    assert body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == MIXED
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    tokenizer = Tokenizer.for_model("gpt-4o-mini")
    usage = body["usage"]
    assert usage["prompt_tokens"] == tokenizer.count_chat(messages)
    assert usage["completion_tokens"] == tokenizer.count(MIXED)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_usage_follows_the_models_encoding(client: TestClient[Any, Any]) -> None:
    text = "encodings differ on this sentence: naïve façade, 東京"
    for model in ("gpt-3.5-turbo", "gpt-4o"):
        _, body = await post(client, "/v1/chat/completions", {**chat(text), "model": model})
        assert body["usage"]["completion_tokens"] == Tokenizer.for_model(model).count(text)


async def test_array_content_echoes_its_text_parts(client: TestClient[Any, Any]) -> None:
    parts = [
        {"type": "text", "text": "look at "},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this"},
    ]
    _, body = await post(client, "/v1/chat/completions", chat(parts))
    assert body["choices"][0]["message"]["content"] == "look at this"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_truncates_with_finish_reason_length(
    client: TestClient[Any, Any], field: str
) -> None:
    text = "one two three four five six seven"
    tokenizer = Tokenizer.for_model("mock-gpt")
    _, body = await post(client, "/v1/chat/completions", chat(text, **{field: 3}))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == "one two three"
    assert body["usage"]["completion_tokens"] == 3
    _, roomy = await post(client, "/v1/chat/completions", chat(text, max_tokens=100))
    assert roomy["choices"][0]["finish_reason"] == "stop"
    assert roomy["usage"]["completion_tokens"] == tokenizer.count(text)


async def test_n_gives_identical_choices(client: TestClient[Any, Any]) -> None:
    _, body = await post(client, "/v1/chat/completions", chat("same for all", n=3))
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in body["choices"]} == {"same for all"}
    assert body["usage"]["completion_tokens"] == 3 * Tokenizer("o200k_base").count("same for all")


async def test_stream_sends_one_chunk_per_token(client: TestClient[Any, Any]) -> None:
    chunks = await stream(client, "/v1/chat/completions", chat(MIXED))
    assert chunks[-1] == "[DONE]"
    objects = chunks[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in objects)
    assert all(c["model"] == "mock-gpt" for c in objects)
    assert len({c["id"] for c in objects}) == 1
    assert objects[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "refusal": None,
    }
    assert objects[-1]["choices"][0]["finish_reason"] == "stop"
    assert objects[-1]["choices"][0]["delta"] == {}
    assert all("usage" not in c for c in objects)
    pieces = contents(objects)
    # Multi-byte characters split across tokens still arrive whole, so the text joins exactly.
    assert "".join(pieces) == MIXED
    assert len(pieces) == Tokenizer.for_model("mock-gpt").count(MIXED)


async def test_stream_usage_chunk_only_when_asked(client: TestClient[Any, Any]) -> None:
    body = chat("count me", stream_options={"include_usage": True})
    chunks = await stream(client, "/v1/chat/completions", body)
    assert chunks[-1] == "[DONE]"
    usage_chunk = chunks[-2]
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] == len(contents(chunks)) == 2
    assert usage["prompt_tokens"] == Tokenizer("o200k_base").count_chat(body["messages"])
    assert all(c["usage"] is None for c in chunks[:-2])
    plain = await stream(client, "/v1/chat/completions", chat("count me"))
    assert all("usage" not in c for c in plain[:-1])


async def test_stream_truncation_and_n(client: TestClient[Any, Any]) -> None:
    body = chat("a b c d e f", n=2, max_tokens=4, stream_options={"include_usage": True})
    chunks = await stream(client, "/v1/chat/completions", body)
    by_choice: dict[int, str] = {0: "", 1: ""}
    finishes = {}
    for chunk in chunks[:-2]:
        for choice in chunk["choices"]:
            by_choice[choice["index"]] += choice["delta"].get("content", "")
            if choice["finish_reason"]:
                finishes[choice["index"]] = choice["finish_reason"]
    assert by_choice == {0: "a b c d", 1: "a b c d"}
    assert finishes == {0: "length", 1: "length"}
    assert chunks[-2]["usage"]["completion_tokens"] == 8


async def test_legacy_completion_echoes_prompt(client: TestClient[Any, Any]) -> None:
    status, body = await post(
        client, "/v1/completions", {"model": "mock-gpt", "prompt": "Say it back"}
    )
    assert status == 200
    assert body["object"] == "text_completion"
    assert body["choices"] == [
        {"text": "Say it back", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    count = Tokenizer("o200k_base").count("Say it back")
    assert body["usage"] == {
        "prompt_tokens": count,
        "completion_tokens": count,
        "total_tokens": 2 * count,
    }


async def test_legacy_completion_prompt_forms(client: TestClient[Any, Any]) -> None:
    tokenizer = Tokenizer("o200k_base")
    ids = tokenizer.encode("from tokens")
    _, body = await post(client, "/v1/completions", {"model": "m", "prompt": ids})
    assert body["choices"][0]["text"] == "from tokens"
    assert body["usage"]["prompt_tokens"] == len(ids)
    _, many = await post(client, "/v1/completions", {"model": "m", "prompt": ["x y", "z"], "n": 2})
    assert [(c["index"], c["text"]) for c in many["choices"]] == [
        (0, "x y"),
        (1, "x y"),
        (2, "z"),
        (3, "z"),
    ]


async def test_legacy_completion_streams_text_chunks(client: TestClient[Any, Any]) -> None:
    body = {"model": "mock-gpt", "prompt": MIXED, "stream_options": {"include_usage": True}}
    chunks = await stream(client, "/v1/completions", body)
    assert chunks[-1] == "[DONE]"
    usage_chunk, finish = chunks[-2], chunks[-3]
    assert all(c["object"] == "text_completion" for c in chunks[:-1])
    assert finish["choices"][0]["finish_reason"] == "stop"
    texts = [c["choices"][0]["text"] for c in chunks[:-3]]
    assert "".join(texts) == MIXED
    assert len(texts) == usage_chunk["usage"]["completion_tokens"]


async def test_embeddings_are_deterministic_unit_vectors(client: TestClient[Any, Any]) -> None:
    body = {"model": "text-embedding-3-small", "input": ["alpha", "beta", "alpha"]}
    status, first = await post(client, "/v1/embeddings", body)
    assert status == 200
    assert first["object"] == "list"
    assert first["model"] == "text-embedding-3-small"
    vectors = [item["embedding"] for item in first["data"]]
    assert [item["index"] for item in first["data"]] == [0, 1, 2]
    assert all(len(v) == 1536 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    _, again = await post(client, "/v1/embeddings", body)
    assert [item["embedding"] for item in again["data"]] == vectors
    tokens = Tokenizer.for_model("text-embedding-3-small").count
    assert first["usage"] == {"prompt_tokens": 2 * tokens("alpha") + tokens("beta")} | {
        "total_tokens": 2 * tokens("alpha") + tokens("beta")
    }


async def test_embeddings_dimensions_base64_and_token_inputs(
    client: TestClient[Any, Any],
) -> None:
    ids = Tokenizer.for_model("text-embedding-3-small").encode("alpha")
    _, floats = await post(
        client,
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": "alpha", "dimensions": 8},
    )
    _, packed = await post(
        client,
        "/v1/embeddings",
        {
            "model": "text-embedding-3-small",
            "input": [ids],
            "dimensions": 8,
            "encoding_format": "base64",
        },
    )
    vector = floats["data"][0]["embedding"]
    assert len(vector) == 8
    decoded = list(struct.unpack("<8f", base64.b64decode(packed["data"][0]["embedding"])))
    assert decoded == vector
    assert packed["usage"]["prompt_tokens"] == len(ids)


async def test_steering_status(client: TestClient[Any, Any]) -> None:
    for status in (429, 500, 503):
        code, body = await post(client, "/v1/chat/completions", chat(f"!status {status} hi"))
        assert code == status
        assert set(body["error"]) == {"message", "type", "param", "code"}
    _, limited = await post(client, "/v1/completions", {"model": "m", "prompt": "!status 429"})
    assert limited["error"]["type"] == "rate_limit_error"


async def test_steering_sleep_waits(client: TestClient[Any, Any]) -> None:
    started = time.monotonic()
    _, body = await post(client, "/v1/chat/completions", chat("!sleep 300 after a nap"))
    assert time.monotonic() - started >= 0.25
    assert body["choices"][0]["message"]["content"] == "after a nap"


async def test_steering_drop_cuts_the_stream(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/v1/chat/completions",
        data=orjson.dumps(chat("!sleep 50 !drop 2 one two three four five", stream=True)),
    )
    assert response.status == 200
    received: list[bytes] = []
    with pytest.raises(aiohttp.ClientError):
        async for line in response.content:
            received.append(line)
    chunks = [orjson.loads(line[6:]) for line in received if line.startswith(b"data: {")]
    assert contents(chunks) == ["one", " two"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    assert b"data: [DONE]\n" not in received


async def test_steering_drop_cuts_a_legacy_stream(client: TestClient[Any, Any]) -> None:
    body = {"model": "m", "prompt": "!drop 1 alpha beta", "stream": True}
    response = await client.post("/v1/completions", data=orjson.dumps(body))
    received: list[bytes] = []
    with pytest.raises(aiohttp.ClientError):
        async for line in response.content:
            received.append(line)
    chunks = [orjson.loads(line[6:]) for line in received if line.startswith(b"data: {")]
    assert [c["choices"][0]["text"] for c in chunks] == ["alpha"]


async def test_steering_drop_without_stream_gives_no_response(
    client: TestClient[Any, Any],
) -> None:
    with pytest.raises(aiohttp.ClientError):
        response = await client.post("/v1/chat/completions", data=orjson.dumps(chat("!drop 1 x")))
        await response.read()
    status, _ = await post(client, "/v1/chat/completions", chat("still serving"))
    assert status == 200


async def test_steering_linger_ends_the_stream_later_than_its_last_event(
    client: TestClient[Any, Any],
) -> None:
    started = time.monotonic()
    response = await client.post(
        "/v1/chat/completions", data=orjson.dumps(chat("!linger 300 one two", stream=True))
    )
    done_at = None
    async for line in response.content:
        if line.startswith(b"data: [DONE]"):
            done_at = time.monotonic()
    assert done_at is not None
    assert time.monotonic() - done_at >= 0.25  # the body's end came that much later
    assert done_at - started < 0.25
    assert parse_steering("!linger 300 one two").linger_ms == 300


def test_steering_words_are_read_only_at_the_start() -> None:
    combined = parse_steering("!sleep 200 !drop 2 !status 502 hello !drop 9")
    assert (combined.sleep_ms, combined.drop_after, combined.status) == (200, 2, 502)
    assert combined.text == "hello !drop 9"
    assert parse_steering("say !status 503").status is None
    assert parse_steering("!status 200 ok").text == "!status 200 ok"
    assert parse_steering("  plain  ").text == "  plain  "


async def test_pacing_and_latency(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(build_mock_app(latency_ms=100, tokens_per_second=40))
    started = time.monotonic()
    chunks = await stream(client, "/v1/chat/completions", chat("one two three four five six"))
    assert len(contents(chunks)) == 6
    # 100 ms of latency plus six tokens at 25 ms each; only a lower bound is meaningful.
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    status, _ = await post(client, "/v1/chat/completions", chat("one two three four five six"))
    assert status == 200
    assert time.monotonic() - started >= 0.2


async def test_client_leaving_mid_stream_is_not_an_error(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(build_mock_app(tokens_per_second=50))
    body = chat("a b c d e f g h i j k l", stream=True)
    response = await client.post("/v1/chat/completions", data=orjson.dumps(body))
    assert (await response.content.readline()).startswith(b"data: ")
    response.close()
    await asyncio.sleep(0.3)
    status, _ = await post(client, "/v1/chat/completions", chat("still serving"))
    assert status == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", b"{not json", None),
        ("/v1/chat/completions", b"[1, 2]", None),
        ("/v1/chat/completions", b'{"model": "m"}', "messages"),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        ("/v1/chat/completions", b'{"model": "m", "messages": ["hi"]}', "messages.[0]"),
        ("/v1/chat/completions", b'{"model": "m", "messages": [{"role": "user"}], "n": 0}', "n"),
        (
            "/v1/chat/completions",
            b'{"model": "m", "messages": [{"role": "user"}], "max_tokens": true}',
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            b'{"model": "m", "messages": [{"role": "user"}], "stream": "yes"}',
            "stream",
        ),
        ("/v1/completions", b'{"model": "m"}', "prompt"),
        ("/v1/completions", b'{"model": "m", "prompt": [999999999]}', "prompt"),
        ("/v1/embeddings", b'{"model": "m", "input": []}', "input"),
        (
            "/v1/embeddings",
            b'{"model": "m", "input": "x", "encoding_format": "hex"}',
            "encoding_format",
        ),
        ("/v1/embeddings", b'{"model": "m", "input": "x", "dimensions": 0}', "dimensions"),
    ],
)
async def test_bad_input_is_an_openai_shaped_400(
    client: TestClient[Any, Any], path: str, body: bytes, param: str | None
) -> None:
    response = await client.post(path, data=body)
    assert response.status == 400
    error = orjson.loads(await response.read())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


async def test_unknown_route_and_method_are_openai_shaped(client: TestClient[Any, Any]) -> None:
    for method, path, status in (("GET", "/v1/nope", 404), ("GET", "/v1/chat/completions", 405)):
        response = await client.request(method, path)
        assert response.status == status
        assert orjson.loads(await response.read())["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("settings", [{"latency_ms": -1.0}, {"tokens_per_second": math.nan}])
def test_invalid_pacing_is_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="tokens_per_second"):
        build_mock_app(**settings)
