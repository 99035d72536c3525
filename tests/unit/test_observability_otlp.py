"""Our OTLP encoder against the official one: decoded with opentelemetry-proto, they must match."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from sidegate.observability.otlp import OtlpHttpSpanExporter, encode_spans


def spans() -> tuple[ReadableSpan, ...]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "sidegate", "n": 3}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "x1")]),
    )
    tracer = provider.get_tracer("sidegate", "1.2")
    server = tracer.start_span(
        "POST /v1/chat/completions",
        context=set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        attributes={
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 12,
            "negative": -5,
            "big": 2**62,
            "sidegate.cost_usd": 0.000123,
            "cached": False,
            "tags": ["a", "b"],
            "unicode": "čaj ☕",
        },
    )
    client = tracer.start_span(
        "chat gpt-4o-mini", context=set_span_in_context(server), kind=SpanKind.CLIENT
    )
    client.add_event("retry", {"attempt": 2})
    client.set_status(Status(StatusCode.ERROR, "attempt failed"))
    client.end()
    server.set_status(Status(StatusCode.OK))
    server.end()
    other = provider.get_tracer("other").start_span("internal")
    other.end()
    return exporter.get_finished_spans()


def decode(data: bytes) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    message.ParseFromString(data)
    return message


def test_our_encoding_decodes_to_what_the_sdk_encodes() -> None:
    finished = spans()
    ours = decode(encode_spans(finished))
    theirs = decode(official(finished).SerializeToString())
    assert ours == theirs
    assert len(ours.resource_spans[0].scope_spans) == 2
    cache: dict[tuple[int, str, str], bytes] = {}
    encode_spans(finished, cache)
    assert decode(encode_spans(finished, cache)) == theirs  # the second time from the cache


class Collector(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []
    statuses: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(self.rfile.read(length))
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[str]:
    Collector.bodies, Collector.statuses = [], [503]
    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    server.shutdown()
    server.server_close()


def test_a_busy_collector_is_retried_and_gets_the_batch(collector: str) -> None:
    exporter = OtlpHttpSpanExporter(collector, headers={"Authorization": "Basic eA=="})
    finished = spans()
    assert exporter.export(finished) == SpanExportResult.SUCCESS
    first, second = Collector.bodies  # a 503, then the same batch again
    assert first == second
    assert len(decode(second).resource_spans[0].scope_spans[0].spans) == 2


def test_an_unreachable_collector_fails_the_batch_without_raising() -> None:
    exporter = OtlpHttpSpanExporter("http://127.0.0.1:9/v1/traces", timeout=0.5)
    exporter.shutdown()  # stopped: no retries, no waiting
    assert exporter.export(spans()) == SpanExportResult.FAILURE
