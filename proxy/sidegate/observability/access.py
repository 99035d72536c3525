"""One structured log line per proxied request (the contract's fields; never prompts or keys).

With the JSON handler alone in charge, the line is written natively into its pending lines
(`_native.AccessLines`); otherwise the logging module formats a record as for any line. A
request answered with an error adds its code as `error` (never its message, which may quote
the request); the native line has no such field, so those lines take the logging module's way.
"""

from __future__ import annotations

import logging
import time
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
        handler = fast_json_handler(log) if exchange.error is None else None
        if handler is not None:
            tenant = exchange.tenant
            if handler.access_lines.add(
                time.time(),
                status >= 500,
                exchange.request_id,
                exchange.trace_id,
                exchange.span_id,
                tenant.name,
                tenant.key_id,
                exchange.model,
                exchange.upstream,
                status,
                exchange.input_tokens,
                exchange.output_tokens,
                exchange.cost_usd,
                latency_seconds * 1000,
                exchange.cache,
                len(exchange.attempts),
            ):
                handler.access_lines_added()
            return
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
        if exchange.error is not None:
            fields["error"] = exchange.error
        log.log(logging.INFO if status < 500 else logging.WARNING, "request", extra=fields)
