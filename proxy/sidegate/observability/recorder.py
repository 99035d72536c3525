"""Accounting at the end of every request: metrics, the JSON log line and the spend row.

Everything here is in-memory work (native counter updates, one access line appended, one row
queued for the spend log, whose writer runs in the background), so accounting never waits on
I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from sidegate.exchange import Exchange
from sidegate.inspection import Endpoint
from sidegate.observability.access import AccessLog
from sidegate.observability.catalog import OPERATIONS, Catalog
from sidegate.observability.metrics import LoopHistogram, Metrics, value_of
from sidegate.spend import SpendSink

# Label sets whose instruments are kept resolved before the cache starts over (labels are
# bounded anyway: configured models and tenants, HTTP statuses).
_MAX_SERIES: Final = 4096

Add = Callable[[float], None]


class _Series:
    """The instruments one label set updates, resolved once: the label children (dict
    lookups), and for counters their values' `inc` (prometheus-client's `Counter.inc` checks
    the amount and the child on every call, ~1 µs for four counters a request).

    A child is made on its first update, as `labels()` at that update would: a series a
    request never touches (a time to first token without a stream, an upstream duration with
    no upstream) must not appear in /metrics."""

    __slots__ = (
        "cost",
        "genai",
        "genai_duration",
        "genai_first_chunk",
        "genai_input",
        "genai_output",
        "input_tokens",
        "output_tokens",
        "request_duration",
        "requests",
        "time_to_first_token",
        "upstream_duration",
    )

    def __init__(self, metrics: Metrics, key: _SeriesKey, catalog: Catalog | None) -> None:
        model_name, upstream, tenant_name, status, served_model, kind = key
        tenant = metrics.tenant(tenant_name)
        model = catalog.model_label(model_name) if catalog is not None else model_name
        counter, histogram = self._counter, self._histogram
        self.requests = counter("requests", metrics.requests, model, upstream, tenant, str(status))
        self.input_tokens = counter("input_tokens", metrics.tokens, model, tenant, "input")
        self.output_tokens = counter("output_tokens", metrics.tokens, model, tenant, "output")
        self.cost = counter("cost", metrics.cost, model, tenant)
        self.upstream_duration = histogram(
            "upstream_duration", metrics.upstream_duration, model, upstream
        )
        self.request_duration = histogram("request_duration", metrics.request_duration, model)
        self.time_to_first_token = histogram(
            "time_to_first_token", metrics.time_to_first_token, model
        )
        # The OpenTelemetry GenAI client instruments, for operations a model answered.
        self.genai = catalog is not None and served_model != "-"
        ignore: Add = _ignore
        self.genai_duration = self.genai_input = self.genai_output = ignore
        self.genai_first_chunk = ignore
        if catalog is not None and self.genai:
            labels = (
                OPERATIONS.get(kind, kind),
                catalog.provider(upstream, served_model),
                model,
                catalog.response_model(served_model),
            )
            error_type = str(status) if status >= 400 else ""
            usage = metrics.genai_token_usage
            self.genai_duration = histogram(
                "genai_duration", metrics.genai_duration, *labels, error_type
            )
            self.genai_input = histogram("genai_input", usage, *labels, "input")
            self.genai_output = histogram("genai_output", usage, *labels, "output")
            self.genai_first_chunk = histogram(
                "genai_first_chunk", metrics.genai_first_chunk, *labels
            )

    def _counter(self, name: str, metric: Any, *labels: str) -> Add:
        return self._on_first_update(name, lambda: value_of(metric.labels(*labels)).inc)

    def _histogram(self, name: str, metric: LoopHistogram, *labels: str) -> Add:
        return self._on_first_update(name, lambda: metric.labels(*labels).observer())

    def _on_first_update(self, name: str, resolve: Callable[[], Add]) -> Add:
        def first(amount: float) -> None:
            update = resolve()
            setattr(self, name, update)
            update(amount)

        return first


_SeriesKey = tuple[str, str, str, int, str, Endpoint]


def _ignore(amount: float) -> None:
    return None


class Recorder:
    def __init__(
        self,
        metrics: Metrics,
        access: AccessLog,
        catalog: Catalog | None = None,
        spend: SpendSink | None = None,
    ) -> None:
        self._metrics = metrics
        self._access = access
        self._catalog = catalog
        self._spend = spend
        self._series: dict[_SeriesKey, _Series] = {}
        self._overhead = metrics.proxy_overhead.observer()

    def finish(self, exchange: Exchange) -> None:
        now = time.perf_counter()
        status = exchange.status or 500
        key = (
            exchange.model,
            exchange.upstream,
            exchange.tenant.name,
            status,
            exchange.served_model,
            exchange.kind,
        )
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= _MAX_SERIES:
                self._series.clear()
            series = self._series[key] = _Series(self._metrics, key, self._catalog)
        latency = now - exchange.started
        series.requests(1)
        # An upstream that failed is named, but answered nothing: no tokens are counted.
        answered = exchange.served_model != "-"
        input_tokens = exchange.input_tokens if answered else 0
        output_tokens = exchange.output_tokens if answered else 0
        if input_tokens:
            series.input_tokens(input_tokens)
        if output_tokens:
            series.output_tokens(output_tokens)
        if exchange.cost_usd:
            series.cost(exchange.cost_usd)
        if exchange.upstream != "-":
            series.upstream_duration(exchange.upstream_seconds)
        if exchange.model != "-":
            series.request_duration(latency)
        first_byte_at = exchange.first_byte_at
        if first_byte_at is not None:
            series.time_to_first_token(first_byte_at - exchange.started)
        self._overhead(exchange.overhead_seconds(now))
        if series.genai:
            series.genai_duration(latency)
            if exchange.input_tokens:
                series.genai_input(exchange.input_tokens)
            if exchange.output_tokens:
                series.genai_output(exchange.output_tokens)
            if exchange.stream and first_byte_at is not None:
                series.genai_first_chunk(first_byte_at - exchange.started)
        self._access.request(exchange, latency_seconds=latency)
        if self._spend is not None:
            self._spend.record(
                time.time(),
                exchange.request_id,
                exchange.tenant.name,
                exchange.tenant.key_id,
                exchange.model[:200],  # the name asked for, bounded (client text)
                exchange.served_model,
                exchange.upstream,
                input_tokens,
                output_tokens,
                exchange.cost_usd,
                latency * 1000,
                status,
                exchange.cache,
                exchange.trace_id,
            )
