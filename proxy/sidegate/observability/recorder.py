"""Accounting at the end of every request: metrics, the JSON log line and the spend row.

Everything here is in-memory work (counter increments, one log call, one deque append for the
spend log, whose writer runs in the background), so accounting never waits on I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from sidegate.exchange import Exchange
from sidegate.inspection import Endpoint
from sidegate.observability.access import AccessLog
from sidegate.observability.catalog import OPERATIONS, Catalog
from sidegate.observability.metrics import Metrics, value_of
from sidegate.spend import SpendLog, SpendRow

# Label sets whose instruments are kept resolved before the cache starts over (labels are
# bounded anyway: configured models and tenants, HTTP statuses).
_MAX_SERIES: Final = 4096

Add = Callable[[float], None]


class _Series:
    """The instruments one label set updates, resolved once: the label children (dict
    lookups), and for counters their values' `inc` (prometheus-client's `Counter.inc` checks
    the amount and the child on every call, ~1 µs for four counters a request)."""

    __slots__ = (
        "cost",
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
        self.requests = _adder(metrics.requests.labels(model, upstream, tenant, str(status)))
        self.input_tokens = _adder(metrics.tokens.labels(model, tenant, "input"))
        self.output_tokens = _adder(metrics.tokens.labels(model, tenant, "output"))
        self.cost = _adder(metrics.cost.labels(model, tenant))
        self.upstream_duration = metrics.upstream_duration.labels(model, upstream).observer()
        self.request_duration = metrics.request_duration.labels(model).observer()
        self.time_to_first_token = metrics.time_to_first_token.labels(model).observer()
        self.genai_duration: Add | None = None
        self.genai_input: Add = _ignore
        self.genai_output: Add = _ignore
        self.genai_first_chunk: Add = _ignore
        if catalog is not None and served_model != "-":
            labels = (
                OPERATIONS.get(kind, kind),
                catalog.provider(upstream, served_model),
                model,
                catalog.response_model(served_model),
            )
            error_type = str(status) if status >= 400 else ""
            self.genai_duration = metrics.genai_duration.labels(*labels, error_type).observer()
            self.genai_input = metrics.genai_token_usage.labels(*labels, "input").observer()
            self.genai_output = metrics.genai_token_usage.labels(*labels, "output").observer()
            self.genai_first_chunk = metrics.genai_first_chunk.labels(*labels).observer()


_SeriesKey = tuple[str, str, str, int, str, Endpoint]


def _adder(child: Any) -> Add:
    return value_of(child).inc


def _ignore(amount: float) -> None:
    return None


class Recorder:
    def __init__(
        self,
        metrics: Metrics,
        access: AccessLog,
        catalog: Catalog | None = None,
        spend: SpendLog | None = None,
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
        answered = exchange.upstream != "-" or exchange.cache == "hit"
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
        if series.genai_duration is not None:
            # The OpenTelemetry GenAI client instruments, for operations a model answered.
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
                SpendRow(
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
                    round(latency * 1000, 3),
                    status,
                    exchange.cache,
                    exchange.trace_id,
                )
            )
