"""OpenTelemetry tracing behind the `Tracing` seam.

A SERVER span per request (parent: the client's W3C `traceparent`, when sent) and a CLIENT span
per upstream attempt, so a retry or fallback shows as a second child. The attempt's own span
context is what the upstream receives as `traceparent`. Attributes follow the GenAI semantic
conventions (`gen_ai.*`), plus the tenant and the cache result. Spans go to an OTLP/HTTP
collector (Jaeger, Tempo, Langfuse...) through a batch processor whose thread encodes and sends
(`otlp.py`), so the request path only builds spans. The provider is this app's own, never the
global one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sidegate.errors import ProxyError, status_of
from sidegate.exchange import Exchange
from sidegate.observability.catalog import OPERATIONS, PATHS, Catalog
from sidegate.observability.otlp import OtlpHttpSpanExporter
from sidegate.settings import TelemetrySettings

# Spans leave at least this often; a collector sees a request about a second after it ends.
_EXPORT_DELAY_MS: Final = 1000
_EXPORT_TIMEOUT_S: Final = 5.0


def traces_url(otlp_endpoint: str) -> str:
    """The base URL with the signal path appended, as the OTel SDK does for its env variable."""
    return otlp_endpoint.rstrip("/") + "/v1/traces"


def build_provider(telemetry: TelemetrySettings, endpoint: str) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": telemetry.service_name}),
        sampler=ParentBased(TraceIdRatioBased(telemetry.trace_sample_ratio)),
    )
    exporter = OtlpHttpSpanExporter(
        traces_url(endpoint), headers=telemetry.otlp_headers, timeout=_EXPORT_TIMEOUT_S
    )
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=_EXPORT_DELAY_MS)
    )
    return provider


class OtelTracing:
    def __init__(self, provider: TracerProvider, catalog: Catalog) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("sidegate")
        self._propagator = TraceContextTextMapPropagator()
        self._catalog = catalog

    @contextmanager
    def request(self, headers: Mapping[str, str], exchange: Exchange) -> Iterator[None]:
        parent = self._propagator.extract(headers)
        path = PATHS.get(exchange.kind, "/v1")
        span = self._tracer.start_span(
            f"POST {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "POST",
                "url.path": path,
                "gen_ai.operation.name": OPERATIONS.get(exchange.kind, exchange.kind),
                "sidegate.request_id": exchange.request_id,
                "sidegate.tenant": exchange.tenant.name,
            },
        )
        context = span.get_span_context()
        if context.is_valid:
            exchange.trace_id = format(context.trace_id, "032x")
            exchange.span_id = format(context.span_id, "016x")
        token = otel_context.attach(set_span_in_context(span, parent))
        try:
            yield
        except ProxyError as error:
            exchange.status = exchange.status or status_of(error)
            span.set_attribute("error.type", error.instance_code or type(error).__name__)
            raise
        except asyncio.CancelledError:
            exchange.status = exchange.status or 499
            span.set_attribute("error.type", "client_closed")
            raise
        finally:
            otel_context.detach(token)
            if span.is_recording():
                self._finish_request(span, exchange)
            span.end()

    def _finish_request(self, span: Span, exchange: Exchange) -> None:
        status = exchange.status or 500
        catalog = self._catalog
        attributes: dict[str, str | int | float] = {
            "http.response.status_code": status,
            "gen_ai.request.model": exchange.model,
            "sidegate.cache": exchange.cache,
            "gen_ai.usage.input_tokens": exchange.input_tokens,
            "gen_ai.usage.output_tokens": exchange.output_tokens,
            "sidegate.cost_usd": exchange.cost_usd,
            "sidegate.attempts": len(exchange.attempts),
        }
        if exchange.served_model != "-":
            attributes["gen_ai.response.model"] = catalog.response_model(exchange.served_model)
            attributes["gen_ai.provider.name"] = catalog.provider(
                exchange.upstream, exchange.served_model
            )
        if exchange.upstream != "-":
            attributes["sidegate.upstream"] = exchange.upstream
        if exchange.error is not None:
            attributes["error.type"] = exchange.error
        span.set_attributes(attributes)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))

    @contextmanager
    def attempt(
        self, exchange: Exchange, upstream: str, endpoint: str
    ) -> Iterator[list[tuple[str, str]]]:
        operation = OPERATIONS.get(exchange.kind, exchange.kind)
        span = self._tracer.start_span(
            f"{operation} {exchange.model}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": exchange.model,
                "gen_ai.provider.name": self._catalog.provider(upstream, exchange.model),
                "server.address": endpoint,
                "sidegate.upstream": upstream,
                "sidegate.attempt": len(exchange.attempts),  # 1 for the first, 2 for a retry
            },
        )
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=set_span_in_context(span))
        try:
            yield list(carrier.items())
        except BaseException as error:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.set_attribute("error.type", _error_type(error))
            raise
        else:
            if span.is_recording():
                self._finish_attempt(span, exchange, endpoint)
        finally:
            span.end()

    def _finish_attempt(self, span: Span, exchange: Exchange, endpoint: str) -> None:
        if exchange.endpoint != endpoint:
            # The pipeline caught this attempt's failure; whether another attempt follows is
            # not known yet (the next attempt's span, if any, has the next `sidegate.attempt`).
            span.set_status(Status(StatusCode.ERROR, "upstream attempt failed"))
            span.set_attribute("error.type", "upstream_failed")
            return
        span.set_attributes(
            {
                "gen_ai.response.model": self._catalog.response_model(exchange.served_model),
                "gen_ai.usage.input_tokens": exchange.input_tokens,
                "gen_ai.usage.output_tokens": exchange.output_tokens,
            }
        )

    def shutdown(self) -> None:
        """Nothing here: `close()` flushes off the event loop (the batch thread blocks)."""
        return None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._provider.shutdown)


def _error_type(error: BaseException) -> str:
    if isinstance(error, ProxyError):
        return error.instance_code or type(error).__name__
    return type(error).__name__
