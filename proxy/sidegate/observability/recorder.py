"""Accounting at the end of every request: metrics, the JSON log line (and, later, spend)."""

from __future__ import annotations

import time

from sidegate.exchange import Exchange
from sidegate.observability.access import AccessLog
from sidegate.observability.metrics import Metrics


class Recorder:
    def __init__(self, metrics: Metrics, access: AccessLog) -> None:
        self._metrics = metrics
        self._access = access

    def finish(self, exchange: Exchange) -> None:
        now = time.perf_counter()
        metrics = self._metrics
        tenant = exchange.tenant.name
        model = exchange.model
        status = str(exchange.status or 500)
        metrics.requests.labels(model, exchange.upstream, tenant, status).inc()
        answered = exchange.upstream != "-" or exchange.cache == "hit"
        if answered and exchange.input_tokens:
            metrics.tokens.labels(model, tenant, "input").inc(exchange.input_tokens)
        if answered and exchange.output_tokens:
            metrics.tokens.labels(model, tenant, "output").inc(exchange.output_tokens)
        if exchange.cost_usd:
            metrics.cost.labels(model, tenant).inc(exchange.cost_usd)
        if exchange.upstream != "-":
            metrics.upstream_duration.labels(model, exchange.upstream).observe(
                exchange.upstream_seconds
            )
        if exchange.model != "-":
            metrics.request_duration.labels(model).observe(now - exchange.started)
        if exchange.first_byte_at is not None:
            metrics.time_to_first_token.labels(model).observe(
                exchange.first_byte_at - exchange.started
            )
        metrics.proxy_overhead.observe(exchange.overhead_seconds(now))
        self._access.request(exchange, latency_seconds=now - exchange.started)
