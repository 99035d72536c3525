"""Telemetry pieces without a server: trace context, bounded labels, spans through the SDK."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import values as prometheus_values

from sidegate._native import BucketObserver
from sidegate.auth import Tenant
from sidegate.errors import UpstreamConnectError
from sidegate.exchange import Exchange
from sidegate.observability.access import AccessLog
from sidegate.observability.catalog import UNKNOWN_MODEL, Catalog
from sidegate.observability.metrics import LoopHistogram, LoopValue, build_metrics
from sidegate.observability.otel import OtelTracing, traces_url
from sidegate.observability.recorder import Recorder
from sidegate.observability.tracing import NoTracing, client_trace_id
from sidegate.settings import ConfigError, Settings, parse_settings

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
SETTINGS = """
upstreams:
  up: {provider: openai, endpoints: ["http://127.0.0.1:9/v1"]}
models:
  fast: {upstream: up, upstream_model: real-fast}
"""


def settings(extra: str = "") -> Settings:
    return parse_settings(SETTINGS + extra, {})


def exchange() -> Exchange:
    return Exchange("req_1", Tenant("acme", None, "k1"), "chat", 0.0, model="fast")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{PARENT}-01", TRACE),
        (f"00-{TRACE.upper()}-{PARENT}-00", TRACE),
        (f"00-{'0' * 32}-{PARENT}-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"ff-{TRACE}-{PARENT}-01", None),
        (f"00-{TRACE[:-1]}g-{PARENT}-01", None),
        ("garbage", None),
        (None, None),
    ],
)
def test_client_trace_ids(header: str | None, expected: str | None) -> None:
    assert client_trace_id(header) == expected


def test_without_tracing_logs_still_carry_the_client_trace_id() -> None:
    record = exchange()
    with NoTracing().request({"traceparent": f"00-{TRACE}-{PARENT}-01"}, record):
        pass
    assert record.trace_id == TRACE


def test_unknown_model_names_share_one_label_after_a_few() -> None:
    catalog = Catalog.from_settings(settings())
    assert catalog.model_label("fast") == "fast"
    names = [catalog.model_label(f"made-up-{i}") for i in range(50)]
    assert names[0] == "made-up-0"
    assert names[-1] == UNKNOWN_MODEL
    assert len(set(names)) == 21
    assert catalog.response_model("fast") == "real-fast"
    assert catalog.provider("up", "fast") == "openai"


def test_the_tenant_label_can_be_collapsed() -> None:
    assert build_metrics().tenant("acme") == "acme"
    assert build_metrics(tenant_label=False).tenant("acme") == "-"


def test_otlp_endpoint_is_a_base_url() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    with pytest.raises(ConfigError, match="otlp_endpoint"):
        settings("telemetry: {otlp_endpoint: collector:4318}")


def test_spans_nest_and_the_attempt_context_goes_upstream() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = OtelTracing(provider, Catalog.from_settings(settings()))
    record = exchange()
    with tracing.request({"traceparent": f"00-{TRACE}-{PARENT}-01"}, record):
        record.attempts.append("http://a")
        with pytest.raises(UpstreamConnectError), tracing.attempt(record, "up", "http://a"):
            raise UpstreamConnectError("refused")
        record.attempts.append("http://b")
        with tracing.attempt(record, "up", "http://b") as headers:
            record.endpoint, record.upstream, record.served_model = "http://b", "up", "fast"
            record.input_tokens, record.output_tokens, record.status = 7, 3, 200
    (name, traceparent), *_ = headers
    spans = {
        (s.kind, s.attributes.get("server.address") if s.attributes else None): s
        for s in exporter.get_finished_spans()
    }
    server = spans[(SpanKind.SERVER, None)]
    first, second = spans[(SpanKind.CLIENT, "http://a")], spans[(SpanKind.CLIENT, "http://b")]
    assert format(server.context.trace_id, "032x") == TRACE
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT
    assert first.parent == second.parent == server.context
    assert not first.status.is_ok and second.status.is_unset
    assert name == "traceparent"
    assert traceparent == f"00-{TRACE}-{format(second.context.span_id, '016x')}-01"
    assert server.attributes is not None
    assert server.attributes["gen_ai.usage.input_tokens"] == 7
    assert server.attributes["gen_ai.response.model"] == "real-fast"
    assert record.trace_id == TRACE and record.span_id == format(server.context.span_id, "016x")


@pytest.mark.parametrize("value_class", [None, LoopValue])
def test_loop_histogram_exposes_what_prometheus_histogram_does(
    value_class: type | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value_class is not None:
        monkeypatch.setattr(prometheus_values, "ValueClass", value_class)
    bounds = (0.005, 0.01, 0.1, 1.0)
    observed = [0.0, 0.005, 0.0050001, 0.01, 0.05, 0.1, 1.0, 1.5, 1e9, -2.0]
    texts = []
    for kind, resolved in ((Histogram, False), (LoopHistogram, False), (LoopHistogram, True)):
        registry = CollectorRegistry()
        histogram = kind("latency_seconds", "doc", ("model",), buckets=bounds, registry=registry)
        child = histogram.labels("m")
        # `observer()`: the one-call form the recorder keeps per label set.
        observe = (
            child.observer() if resolved and isinstance(child, LoopHistogram) else child.observe
        )
        for amount in observed:
            observe(amount)
        text = generate_latest(registry).decode()
        texts.append("\n".join(line for line in text.splitlines() if "_created" not in line))
    assert texts[0] == texts[1] == texts[2]
    assert 'latency_seconds_bucket{le="0.005",model="m"} 3.0' in texts[1]
    assert 'latency_seconds_bucket{le="+Inf",model="m"} 10.0' in texts[1]


def test_loop_values_count_like_locked_ones() -> None:
    value = LoopValue("counter", "x", "x_total", (), (), "doc", multiprocess_mode="sum")
    for _ in range(3):
        value.inc(1.5)
    assert value.get() == 4.5
    value.set(2.0)
    assert value.get() == 2.0
    assert value.get_exemplar() is None


def test_a_bucket_observer_needs_one_bucket_per_bound() -> None:
    total, buckets = LoopValue(), [LoopValue(), LoopValue()]
    with pytest.raises(ValueError, match="one bucket per upper bound"):
        BucketObserver(total, buckets, [1.0, 2.0, float("inf")])
    observe = BucketObserver(total, buckets, [1.0, float("inf")])
    for amount in (1.0, 1.5, float("nan")):
        observe(amount)
    assert [bucket.get() for bucket in buckets] == [2.0, 1.0]  # NaN lands first, as bisect


def test_a_request_adds_only_the_series_it_updates() -> None:
    metrics = build_metrics(CollectorRegistry())
    recorder = Recorder(metrics, AccessLog(), Catalog.from_settings(settings()))
    refused = exchange()
    refused.model, refused.status = "nope", 404  # no upstream answered it
    recorder.finish(refused)
    text = generate_latest(metrics.registry).decode()
    assert 'llm_requests_total{model="nope",status="404",tenant="acme",upstream="-"} 1.0' in text
    for absent in ("llm_upstream_duration_seconds_count", "llm_time_to_first_token_seconds_count"):
        assert absent not in text
    assert "gen_ai_client_operation_duration_seconds_count" not in text
    assert "llm_tokens_total{" not in text
    streamed = exchange()
    streamed.upstream, streamed.served_model, streamed.status = "up", "fast", 200
    streamed.stream, streamed.first_byte_at = True, 0.25
    streamed.input_tokens, streamed.output_tokens, streamed.cost_usd = 7, 3, 0.5
    for _ in range(2):
        recorder.finish(streamed)
    text = generate_latest(metrics.registry).decode()
    assert 'llm_requests_total{model="fast",status="200",tenant="acme",upstream="up"} 2.0' in text
    assert 'llm_tokens_total{model="fast",tenant="acme",token_type="output"} 6.0' in text
    assert 'llm_cost_usd_total{model="fast",tenant="acme"} 1.0' in text
    assert 'llm_time_to_first_token_seconds_count{model="fast"} 2.0' in text
    assert 'llm_upstream_duration_seconds_count{model="fast",upstream="up"} 2.0' in text
    first_chunk = "gen_ai_client_operation_time_to_first_chunk_seconds_count"
    assert f'{first_chunk}{{gen_ai_operation_name="chat"' in text
