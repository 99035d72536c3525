"""One structured log line per proxied request (the contract's fields; never prompts or keys)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sidegate.observability.logging import fast_json_handler

if TYPE_CHECKING:
    from sidegate.exchange import Exchange

log = logging.getLogger("sidegate.access")


class AccessLog:
    __slots__ = ()

    def request(self, exchange: Exchange, *, latency_seconds: float) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        status = exchange.status or 500
        level = logging.INFO if status < 500 else logging.WARNING
        fields = {
            "request_id": exchange.request_id,
            "trace_id": exchange.trace_id,
            "span_id": exchange.span_id,
            "tenant": exchange.tenant.name,
            "key_id": exchange.tenant.key_id,
            "model": exchange.model,
            "upstream": exchange.upstream,
            "status": status,
            "input_tokens": exchange.input_tokens,
            "output_tokens": exchange.output_tokens,
            "cost_usd": round(exchange.cost_usd, 8),
            "latency_ms": round(latency_seconds * 1000, 3),
            "cache": exchange.cache,
            "attempts": len(exchange.attempts),
        }
        handler = fast_json_handler(log)
        if handler is not None:
            handler.write_fields(level, "sidegate.access", "request", fields)
        else:
            log.log(level, "request", extra=fields)
