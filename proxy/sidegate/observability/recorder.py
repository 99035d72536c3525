"""Accounting at the end of every request: metrics, the JSON log line and the spend row.

Everything here is in-memory work (counter increments, one log call, one deque append for the
spend log, whose writer runs in the background), so accounting never waits on I/O.
"""

from __future__ import annotations

import time

from sidegate.exchange import Exchange
from sidegate.observability.access import AccessLog
from sidegate.observability.catalog import OPERATIONS, Catalog
from sidegate.observability.metrics import Children, Metrics
from sidegate.spend import SpendLog, SpendRow


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
        self._requests = Children(metrics.requests)
        self._tokens = Children(metrics.tokens)
        self._cost = Children(metrics.cost)
        self._upstream_duration = Children(metrics.upstream_duration)
        self._request_duration = Children(metrics.request_duration)
        self._time_to_first_token = Children(metrics.time_to_first_token)
        self._genai_duration = Children(metrics.genai_duration)
        self._genai_token_usage = Children(metrics.genai_token_usage)
        self._genai_first_chunk = Children(metrics.genai_first_chunk)

    def finish(self, exchange: Exchange) -> None:
        now = time.perf_counter()
        metrics = self._metrics
        tenant = metrics.tenant(exchange.tenant.name)
        catalog = self._catalog
        model = catalog.model_label(exchange.model) if catalog is not None else exchange.model
        status_code = exchange.status or 500
        status = str(status_code)
        latency = now - exchange.started
        self._requests(model, exchange.upstream, tenant, status).inc()
        answered = exchange.upstream != "-" or exchange.cache == "hit"
        if answered and exchange.input_tokens:
            self._tokens(model, tenant, "input").inc(exchange.input_tokens)
        if answered and exchange.output_tokens:
            self._tokens(model, tenant, "output").inc(exchange.output_tokens)
        if exchange.cost_usd:
            self._cost(model, tenant).inc(exchange.cost_usd)
        if exchange.upstream != "-":
            self._upstream_duration(model, exchange.upstream).observe(exchange.upstream_seconds)
        if exchange.model != "-":
            self._request_duration(model).observe(latency)
        if exchange.first_byte_at is not None:
            self._time_to_first_token(model).observe(exchange.first_byte_at - exchange.started)
        metrics.proxy_overhead.observe(exchange.overhead_seconds(now))
        if catalog is not None and exchange.served_model != "-":
            self._genai(exchange, model, status_code, latency, catalog)
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
                    exchange.input_tokens if answered else 0,
                    exchange.output_tokens if answered else 0,
                    exchange.cost_usd,
                    round(latency * 1000, 3),
                    status_code,
                    exchange.cache,
                    exchange.trace_id,
                )
            )

    def _genai(
        self, exchange: Exchange, model: str, status: int, latency: float, catalog: Catalog
    ) -> None:
        """The OpenTelemetry GenAI client instruments, for operations a model answered."""
        labels = (
            OPERATIONS.get(exchange.kind, exchange.kind),
            catalog.provider(exchange.upstream, exchange.served_model),
            model,
            catalog.response_model(exchange.served_model),
        )
        self._genai_duration(*labels, str(status) if status >= 400 else "").observe(latency)
        if exchange.input_tokens:
            self._genai_token_usage(*labels, "input").observe(exchange.input_tokens)
        if exchange.output_tokens:
            self._genai_token_usage(*labels, "output").observe(exchange.output_tokens)
        if exchange.stream and exchange.first_byte_at is not None:
            self._genai_first_chunk(*labels).observe(exchange.first_byte_at - exchange.started)
