"""The gateway end to end: real processes, driven by the official openai SDK."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import openai
import orjson
import pytest

from sidegate.tokens import Tokenizer
from tests.e2e.procs import ACCESS_LINE_FIELDS, Process, free_port, http_get, metric_value, start

CLIENT_KEY = "sk-acme-client-key"
UPSTREAM_KEY = "sk-upstream-secret-key"

CONFIG = """
server: {{max_body_bytes: 65536, http: {transport}}}
upstreams:
  local:
    provider: openai
    endpoints: ["{upstream}/v1"]
    api_key: "{upstream_key}"
    timeout_seconds: 1.5
    transport: {transport}
  broken: {{provider: openai, endpoints: ["http://127.0.0.1:{dead}/v1"], transport: {transport}}}
models:
  gpt-4o-mini:
    upstream: local
    upstream_model: mock-gpt
    price_per_1k: {{input: 0.001, output: 0.002}}
  text-embedding-3-small: {{upstream: local}}
  gpt-3.5-turbo-instruct: {{upstream: local}}
  nowhere: {{upstream: broken}}
tenants:
  acme: {{keys: ["{client_key}"]}}
"""


@pytest.fixture(scope="module", params=["lean", "aiohttp"])
def gateway(
    request: pytest.FixtureRequest, mock_upstream: Process, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    """The gateway, once all lean (server and upstream transport, the defaults) and once all
    aiohttp: the whole suite runs against both servers and both transports."""
    directory = tmp_path_factory.mktemp("gateway")
    config = directory / "config.yaml"
    config.write_text(
        CONFIG.format(
            upstream=mock_upstream.url,
            upstream_key=UPSTREAM_KEY,
            client_key=CLIENT_KEY,
            dead=free_port(),
            transport=request.param,
        )
    )
    port = free_port()
    process = start(
        ["serve", "--config", str(config), "--port", str(port)], port, directory / "serve.log"
    )
    yield process
    process.stop()
    assert UPSTREAM_KEY not in process.output()
    assert CLIENT_KEY not in process.output()


@pytest.fixture
def client(gateway: Process) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def async_client(gateway: Process) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0
    ) as sdk:
        yield sdk


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_chat_completion_echoes_and_counts(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user("Hello there, gateway!")
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello there, gateway!"
    expected_prompt = Tokenizer("o200k_base").count_chat(user("Hello there, gateway!"))
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == expected_prompt
    assert raw.headers["x-request-id"]
    assert raw.headers["x-cache"] == "miss"
    assert float(raw.headers["x-sidegate-overhead-ms"]) >= 0


async def test_async_chat(async_client: openai.AsyncOpenAI) -> None:
    completion = await async_client.chat.completions.create(
        model="gpt-4o-mini", messages=user("async works")
    )
    assert completion.choices[0].message.content == "async works"


def test_stream_without_usage_hides_the_usage_chunk(client: openai.OpenAI) -> None:
    text = "Streaming, one token at a time: 你好 🤦🏼‍♂️"
    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", messages=user(text), stream=True)
    )
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text


def test_stream_with_usage(client: openai.OpenAI) -> None:
    text = "count me please"
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=user(text),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.completion_tokens == Tokenizer("o200k_base").count(text)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text


async def test_64_concurrent_streams(async_client: openai.AsyncOpenAI) -> None:
    async def one(index: int) -> str:
        stream = await async_client.chat.completions.create(
            model="gpt-4o-mini", messages=user(f"stream number {index}"), stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    results = await asyncio.gather(*(one(i) for i in range(64)))
    assert results == [f"stream number {i}" for i in range(64)]


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
    assert len(result.data) == 2
    for item in result.data:
        assert math.isclose(math.sqrt(sum(x * x for x in item.embedding)), 1.0, rel_tol=1e-3)
    again = client.embeddings.create(model="text-embedding-3-small", input="a")
    assert again.data[0].embedding == result.data[0].embedding


def test_legacy_completion(client: openai.OpenAI) -> None:
    result = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say this")
    assert result.choices[0].text == "Say this"


def test_models_list_shows_configured_models(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids == ["gpt-4o-mini", "text-embedding-3-small", "gpt-3.5-turbo-instruct", "nowhere"]


def test_unknown_key_is_401(gateway: Process) -> None:
    bad = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-wrong", max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="gpt-4o-mini", messages=user("hi"))
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]


def test_missing_key_is_401(gateway: Process) -> None:
    status, body = http_get(gateway.url + "/v1/models")
    assert status == 401
    assert orjson.loads(body)["error"]["type"] == "authentication_error"


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=user("hi"))
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_missing_messages_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert caught.value.body["param"] == "messages"  # type: ignore[index]


async def test_malformed_json_and_wrong_types_are_400(gateway: Process) -> None:
    import aiohttp

    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        for body in (
            b"{not json",
            b"[1, 2]",
            b'{"model": 5, "messages": []}',
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "n": "2"}',
        ):
            async with session.post(
                gateway.url + "/v1/chat/completions", data=body, headers=headers
            ) as response:
                assert response.status == 400, body
                error = (await response.json())["error"]
                assert set(error) == {"message", "type", "param", "code"}
                assert error["type"] == "invalid_request_error"


def test_body_over_the_limit_is_413(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=user("x" * 70_000))
    assert caught.value.status_code == 413


def test_upstream_error_status_passes_through(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=user("!status 503"))
    assert caught.value.status_code == 503


def test_unreachable_upstream_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="nowhere", messages=user("hi"))
    assert caught.value.status_code == 502


def test_upstream_timeout_is_504(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=user("!sleep 4000 hi"))
    assert caught.value.status_code == 504


def test_a_stream_read_to_its_done_is_a_whole_answer_though_the_client_closes_there(
    gateway: Process, client: openai.OpenAI
) -> None:
    """The sync SDK closes a stream at `[DONE]` without reading the body's end; an upstream
    that ends its response later must not turn the answer into a client departure (499)."""
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user("!linger 1500 all of it"), stream=True
    )
    request_id = stream.headers["x-request-id"]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream.parse())
    assert text == "all of it"
    line: dict[str, object] = {}
    for _ in range(100):  # the line is written once the upstream has ended, 1.5 s on
        lines = [orjson.loads(raw) for raw in gateway.output().splitlines() if request_id in raw]
        line = next((one for one in lines if one.get("message") == "request"), {})
        if line:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert line["status"] == 200
    assert line["output_tokens"] == 3


def test_an_upstream_that_gzips_anyway_is_read_as_plain_text(client: openai.OpenAI) -> None:
    """Sidegate asks for identity; an upstream that encodes its answer all the same (a
    misconfigured server or proxy) must not reach the client as compressed bytes."""
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=user("!gzip 1 squeezed but whole")
    )
    assert reply.choices[0].message.content == "squeezed but whole"
    expected = Tokenizer.for_model("gpt-4o-mini").count("squeezed but whole")
    assert reply.usage is not None and reply.usage.completion_tokens == expected
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=user("!gzip 1 a squeezed stream"), stream=True
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "a squeezed stream"


def test_cut_stream_ends_with_an_error_event(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=user("!drop 3 one two three four five six"), stream=True
    )
    received = []
    with pytest.raises(openai.APIError, match="upstream"):
        for chunk in stream:
            received.append(chunk)
    assert 1 <= len(received) <= 4


def test_metrics_count_requests(client: openai.OpenAI, gateway: Process) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=user("metered"))
    _, body = http_get(gateway.url + "/metrics")
    text = body.decode()
    count = metric_value(text, "llm_requests_total", model="gpt-4o-mini", status="200")
    assert count is not None and count >= 1
    assert metric_value(text, "llm_requests_total", model="gpt-9", status="404") is not None


def test_secrets_do_not_reach_logs_or_metrics(client: openai.OpenAI, gateway: Process) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=user("secret check"))
    _, body = http_get(gateway.url + "/metrics")
    assert CLIENT_KEY.encode() not in body and UPSTREAM_KEY.encode() not in body
    assert CLIENT_KEY not in gateway.output() and UPSTREAM_KEY not in gateway.output()


def test_the_upstream_gets_its_own_key_and_the_clients_other_headers(
    gateway: Process, mock_upstream: Process
) -> None:
    extra = {
        "OpenAI-Organization": "org-acme",
        "X-Trace-Tag": "blue;weight=0.5",
        "Cookie": "session=client-cookie",
        "x-api-key": CLIENT_KEY,
        "api-key": CLIENT_KEY,
        "Proxy-Authorization": "Basic client",
        "Connection": "keep-alive, X-Private-Hop",
        "X-Private-Hop": "hop",
    }
    with openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0, default_headers=extra
    ) as sdk:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=user("which headers?"))
    _, body = http_get(mock_upstream.url + "/_mock/last-request")
    seen = orjson.loads(body)
    names = [name.lower() for name, _ in seen["headers"]]
    headers = {name.lower(): value for name, value in seen["headers"]}
    assert seen["method"] == "POST" and seen["path"] == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert CLIENT_KEY not in body.decode()
    for dropped in ("cookie", "x-api-key", "api-key", "proxy-authorization", "x-private-hop"):
        assert dropped not in headers
    # The client's organization (the SDK sends OPENAI_ORG_ID) would not match the upstream's
    # key, which OpenAI refuses.
    assert "openai-organization" not in headers
    assert headers["x-trace-tag"] == "blue;weight=0.5"
    assert headers["x-stainless-lang"] == "python"  # the SDK's own headers pass
    assert headers["accept-encoding"] == "identity"
    assert headers["host"] == mock_upstream.url.removeprefix("http://")
    assert len(names) == len(set(names))  # nothing sent twice


def test_json_access_log_line(client: openai.OpenAI, gateway: Process) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user("log me")
    )
    request_id = raw.headers["x-request-id"]
    for _ in range(50):
        lines = [orjson.loads(line) for line in gateway.output().splitlines() if request_id in line]
        if lines:
            break
        asyncio.run(asyncio.sleep(0.05))
    line = lines[0]
    assert ACCESS_LINE_FIELDS <= line.keys(), ACCESS_LINE_FIELDS - line.keys()
    assert line["tenant"] == "acme" and line["status"] == 200
    assert "log me" not in gateway.output()


def test_a_hung_endpoint_fails_over_to_the_next_and_then_to_the_fallback(
    mock_upstream: Process, spawn: Callable[..., Process], write_config: Callable[[str], Path]
) -> None:
    """An endpoint that accepts the request and never answers within `timeout_seconds` is
    passed over like one that refuses it: nothing has reached the client yet."""
    hung = spawn("mock-upstream", "--latency-ms", "5000")
    config = write_config(f"""
        upstreams:
          pool: {{endpoints: ["{hung.url}/v1", "{mock_upstream.url}/v1"], timeout_seconds: 0.5}}
          slow: {{endpoints: ["{hung.url}/v1"], timeout_seconds: 0.5}}
        models:
          m: {{upstream: pool}}
          slow-model: {{upstream: slow, fallbacks: [m]}}
          slow-alone: {{upstream: slow}}
    """)
    gateway = spawn("serve", "--config", str(config))
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as client:
        reply = client.chat.completions.create(model="m", messages=user("next endpoint"))
        assert reply.choices[0].message.content == "next endpoint"
        raw = client.chat.completions.with_raw_response.create(
            model="slow-model", messages=user("the fallback")
        )
        assert raw.parse().choices[0].message.content == "the fallback"
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="slow-alone", messages=user("nowhere else"))
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"


def test_failover_past_a_dead_endpoint(
    mock_upstream: Process, spawn: Callable[..., Process], write_config: Callable[[str], Path]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = write_config(f"""
        upstreams:
          pool: {{endpoints: ["{dead}", "{mock_upstream.url}/v1"]}}
        models:
          m: {{upstream: pool}}
    """)
    gateway = spawn("serve", "--config", str(config))
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as client:
        for index in range(6):
            reply = client.chat.completions.create(model="m", messages=user(f"try {index}"))
            assert reply.choices[0].message.content == f"try {index}"
    _, body = http_get(gateway.url + "/metrics")
    assert metric_value(body.decode(), "llm_upstream_up", endpoint=dead) == 0.0
