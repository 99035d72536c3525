"""Traces end to end: a real gateway exports OTLP/HTTP to a receiver in this test, and an
upstream in this test records the `traceparent` it is sent."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from sidegate.mock_upstream import build_mock_app
from tests.e2e.procs import Process, free_port

KEY = "sk-tracing-client-key"
CONFIG = """
upstreams:
  local: {{endpoints: ["http://127.0.0.1:{dead}/v1", "{upstream}/v1"]}}
models:
  gpt-4o-mini: {{upstream: local, upstream_model: mock-gpt}}
tenants:
  acme: {{keys: ["{key}"]}}
spend: {{enabled: false}}
cache: {{enabled: false}}
telemetry: {{otlp_endpoint: {otlp}, trace_sample_ratio: {ratio}}}
"""


@dataclass
class Collected:
    spans: list[Span] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    traceparents: list[str] = field(default_factory=list)


@pytest.fixture
async def collected() -> AsyncIterator[tuple[Collected, str, str]]:
    """An OTLP/HTTP receiver and a mock upstream that remembers each request's traceparent."""
    seen = Collected()

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        seen.paths.append(request.path)
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                seen.spans.extend(scope.spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    async def remember(request: web.Request, _: web.StreamResponse) -> None:
        if request.method == "POST":
            seen.traceparents.append(request.headers.get("traceparent", ""))

    receiver_app = web.Application()
    receiver_app.router.add_post("/v1/traces", traces)
    upstream_app = build_mock_app()
    upstream_app.on_response_prepare.append(remember)
    receiver, upstream = TestServer(receiver_app), TestServer(upstream_app)
    await receiver.start_server()
    await upstream.start_server()
    yield seen, str(receiver.make_url("")).rstrip("/"), str(upstream.make_url("")).rstrip("/")
    await receiver.close()
    await upstream.close()


def _gateway(
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
    upstream: str,
    otlp: str | None,
    ratio: float = 1.0,
) -> Process:
    text = CONFIG.format(
        dead=free_port(),
        upstream=upstream,
        key=KEY,
        otlp=otlp or "null",
        ratio=ratio,
    )
    return spawn("serve", "--config", str(write_config(text)))


def attributes(span: Span) -> dict[str, object]:
    found: dict[str, object] = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        found[item.key] = getattr(item.value, kind) if kind else None
    return found


async def _until(check: Callable[[], bool], seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting for telemetry")


CLIENT_TRACES = (
    ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
    ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
)


async def test_spans_continue_the_client_trace_and_show_each_upstream_attempt(
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
    collected: tuple[Collected, str, str],
) -> None:
    seen, otlp, upstream = collected
    gateway = _gateway(spawn, write_config, upstream, otlp)
    usages = {}
    for trace_id, parent_id in CLIENT_TRACES:
        headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
        async with openai.AsyncOpenAI(
            base_url=gateway.url + "/v1", api_key=KEY, max_retries=0, default_headers=headers
        ) as client:
            answer = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "trace me"}]
            )
        usages[trace_id] = answer.usage
    # Two servers spans and three attempts: one request met the dead endpoint first.
    await _until(lambda: len(seen.spans) >= 5)
    assert set(seen.paths) == {"/v1/traces"}
    server_spans = [s for s in seen.spans if s.kind == Span.SPAN_KIND_SERVER]
    client_spans = [s for s in seen.spans if s.kind == Span.SPAN_KIND_CLIENT]
    assert len(server_spans) == 2
    assert len(client_spans) == 3
    for trace_id, parent_id in CLIENT_TRACES:
        (server,) = [s for s in server_spans if s.trace_id.hex() == trace_id]
        assert server.parent_span_id.hex() == parent_id
        found = attributes(server)
        usage = usages[trace_id]
        assert usage is not None
        assert found["gen_ai.request.model"] == "gpt-4o-mini"
        assert found["gen_ai.response.model"] == "mock-gpt"
        assert found["gen_ai.provider.name"] == "openai"
        assert found["gen_ai.usage.input_tokens"] == usage.prompt_tokens
        assert found["gen_ai.usage.output_tokens"] == usage.completion_tokens
        assert found["sidegate.tenant"] == "acme"
        assert found["sidegate.cache"] == "miss"
        assert found["http.response.status_code"] == 200
        attempts = [s for s in client_spans if s.trace_id.hex() == trace_id]
        assert all(a.parent_span_id == server.span_id for a in attempts)
        assert all(attributes(a)["gen_ai.request.model"] == "gpt-4o-mini" for a in attempts)
        assert attempts[-1].status.code != Status.STATUS_CODE_ERROR
        if len(attempts) == 2:
            failed = min(attempts, key=lambda a: a.start_time_unix_nano)
            assert failed.status.code == Status.STATUS_CODE_ERROR
    # The upstream saw each successful attempt's own span as its parent, in the client's trace.
    succeeded = [s for s in client_spans if s.status.code != Status.STATUS_CODE_ERROR]
    expected = {f"00-{s.trace_id.hex()}-{s.span_id.hex()}-01" for s in succeeded}
    assert set(seen.traceparents) == expected
    gateway.stop()
    lines = [orjson.loads(x) for x in gateway.output().splitlines() if x.strip()]
    logged = {
        line["trace_id"]: line["span_id"] for line in lines if line.get("message") == "request"
    }
    assert logged == {s.trace_id.hex(): s.span_id.hex() for s in server_spans}


async def test_unsampled_requests_export_nothing_but_still_propagate(
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
    collected: tuple[Collected, str, str],
) -> None:
    seen, otlp, upstream = collected
    gateway = _gateway(spawn, write_config, upstream, otlp, ratio=0.0)
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=KEY) as client:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "quiet"}]
        )
    gateway.stop()  # a graceful stop flushes whatever was recorded
    assert seen.spans == []
    (traceparent,) = seen.traceparents
    version, _, _, flags = traceparent.split("-")
    assert version == "00"
    assert int(flags, 16) & 1 == 0  # "not sampled", so the upstream need not record either


async def test_without_tracing_the_client_traceparent_passes_through(
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
    collected: tuple[Collected, str, str],
) -> None:
    seen, _, upstream = collected
    gateway = _gateway(spawn, write_config, upstream, None)
    trace_id, parent_id = CLIENT_TRACES[0]
    traceparent = f"00-{trace_id}-{parent_id}-01"
    async with openai.AsyncOpenAI(
        base_url=gateway.url + "/v1",
        api_key=KEY,
        max_retries=0,
        default_headers={"traceparent": traceparent},
    ) as client:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "untraced"}]
        )
    assert seen.traceparents[-1] == traceparent
    gateway.stop()
    lines = [orjson.loads(x) for x in gateway.output().splitlines() if x.strip()]
    (request,) = [line for line in lines if line.get("message") == "request"]
    assert request["trace_id"] == trace_id


async def test_refused_and_failed_requests_have_their_server_span(
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
    collected: tuple[Collected, str, str],
) -> None:
    seen, otlp, upstream = collected
    # One endpoint only: the failed request makes a single attempt, retried nowhere.
    config = CONFIG.replace('"http://127.0.0.1:{dead}/v1", ', "")
    text = config.format(upstream=upstream, key=KEY, otlp=otlp, ratio=1.0)
    gateway = spawn("serve", "--config", str(write_config(text)))
    async with openai.AsyncOpenAI(
        base_url=gateway.url + "/v1", api_key="sk-not-a-key", max_retries=0
    ) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "let me in"}]
            )
    async with openai.AsyncOpenAI(
        base_url=gateway.url + "/v1", api_key=KEY, max_retries=0
    ) as client:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "!status 503"}]
            )
    await _until(lambda: len(seen.spans) >= 3)
    servers = {
        attributes(s)["http.response.status_code"]: s
        for s in seen.spans
        if s.kind == Span.SPAN_KIND_SERVER
    }
    assert set(servers) == {401, 503}
    rejected = attributes(servers[401])
    assert rejected["sidegate.tenant"] == "-"
    assert rejected["error.type"] == "invalid_api_key"
    failed = attributes(servers[503])
    assert failed["sidegate.upstream"] == "local"
    assert failed["sidegate.attempts"] == 1
    assert servers[503].status.code == Status.STATUS_CODE_ERROR
    (attempt,) = [s for s in seen.spans if s.kind == Span.SPAN_KIND_CLIENT]
    assert attempt.status.code == Status.STATUS_CODE_ERROR
    assert "retried" not in attempt.status.message
    assert attributes(attempt)["sidegate.attempt"] == 1
