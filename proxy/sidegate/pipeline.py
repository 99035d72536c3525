"""The request pipeline every endpoint family shares (DESIGN.md §2).

Routes parse nothing themselves: they hand the raw request and their endpoint kind here. The
pipeline inspects the body, resolves the model, forwards to the best endpoint with failover,
relays the answer (streaming or not) and accounts for it in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from sidegate.auth import Tenant
from sidegate.context import REQUEST_ID_KEY, TENANT_KEY
from sidegate.errors import (
    ProxyError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    status_of,
)
from sidegate.inspection import Endpoint, RequestFacts, inspect_request
from sidegate.observability.access import AccessLog
from sidegate.observability.metrics import Metrics
from sidegate.routing import Candidate, Router
from sidegate.settings import Settings
from sidegate.tokens import Tokenizer, encoding_for_model
from sidegate.upstream.headers import client_response_headers, upstream_request_headers
from sidegate.upstream.pool import Endpoint as PoolEndpoint
from sidegate.upstream.pool import UpstreamPools
from sidegate.upstream.sse import SseFramer, error_event
from sidegate.upstream.transport import UpstreamResponse

log = logging.getLogger("sidegate.access")

_PATHS: dict[Endpoint, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}


@dataclass(slots=True)
class Exchange:
    """What one request did, filled in as it goes and accounted for at the end."""

    request_id: str
    tenant: Tenant
    started: float
    model: str = "-"
    upstream: str = "-"
    status: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    upstream_seconds: float = 0.0
    first_byte_at: float | None = None
    attempts: list[str] = field(default_factory=list)

    def overhead_seconds(self, now: float) -> float:
        return max(0.0, now - self.started - self.upstream_seconds)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        router: Router,
        pools: UpstreamPools,
        metrics: Metrics,
        access: AccessLog,
    ) -> None:
        self._settings = settings
        self._router = router
        self._pools = pools
        self._metrics = metrics
        self._access = access

    async def handle(self, request: web.Request, kind: Endpoint) -> web.StreamResponse:
        exchange = Exchange(
            request_id=request[REQUEST_ID_KEY],
            tenant=request[TENANT_KEY],
            started=time.perf_counter(),
        )
        active = None
        try:
            body = await request.read()
            facts = inspect_request(body, kind)
            exchange.model = facts.model
            candidates = self._router.candidates(facts.model)
            if candidates[0].encoding != encoding_for_model(facts.model):
                facts = inspect_request(body, kind, candidates[0].encoding)
            exchange.input_tokens = facts.prompt_tokens
            active = self._metrics.active_requests.labels(facts.model)
            active.inc()
            response = await self._forward(request, kind, body, facts, candidates, exchange)
            exchange.status = response.status
            return response
        except ProxyError as error:
            exchange.status = status_of(error)
            raise
        except asyncio.CancelledError:
            exchange.status = 499  # the client went away
            raise
        finally:
            if active is not None:
                active.dec()
            self._account(exchange)

    async def _forward(
        self,
        request: web.Request,
        kind: Endpoint,
        body: bytes,
        facts: RequestFacts,
        candidates: Sequence[Candidate],
        exchange: Exchange,
    ) -> web.StreamResponse:
        hide_usage = facts.stream and kind != "embeddings" and not facts.include_usage
        last_error: UpstreamError | None = None
        for candidate in candidates:
            pool = self._pools[candidate.upstream]
            upstream_body = _rewrite(body, facts.model, candidate, add_usage=hide_usage)
            headers = upstream_request_headers(request.headers, pool.auth_headers)
            for endpoint in pool.ordered():
                exchange.attempts.append(endpoint.base_url)
                try:
                    upstream = await self._attempt(
                        pool.name, endpoint, kind, headers, upstream_body, exchange
                    )
                except UpstreamTimeoutError:
                    pool.mark_failed(endpoint)
                    raise
                except UpstreamError as error:
                    pool.mark_failed(endpoint)
                    last_error = error
                    continue
                pool.mark_ok(endpoint)
                exchange.upstream = candidate.upstream
                try:
                    if facts.stream and _is_sse(upstream):
                        return await self._relay_stream(
                            request, upstream, candidate, exchange, hide_usage
                        )
                    return await self._relay_whole(upstream, candidate, exchange)
                finally:
                    upstream.close()
                    endpoint.outstanding -= 1
        if last_error is None:
            raise UpstreamError("No upstream endpoint is configured for this model.")
        raise last_error

    async def _attempt(
        self,
        upstream_name: str,
        endpoint: PoolEndpoint,
        kind: Endpoint,
        headers: list[tuple[str, str]],
        body: bytes,
        exchange: Exchange,
    ) -> UpstreamResponse:
        """Send to one endpoint; a 5xx before any byte of the answer counts as a failure."""
        pool = self._pools[upstream_name]
        endpoint.outstanding += 1
        sent = time.perf_counter()
        try:
            upstream = await pool.transport.send(
                "POST", endpoint.base_url + _PATHS[kind], headers, body, pool.timeouts
            )
        except BaseException:
            endpoint.outstanding -= 1
            exchange.upstream_seconds += time.perf_counter() - sent
            raise
        exchange.upstream_seconds += time.perf_counter() - sent
        if upstream.status >= 500:
            try:
                error_body = await upstream.read()
            except UpstreamError:
                error_body = b""
            finally:
                upstream.close()
                endpoint.outstanding -= 1
            raise UpstreamStatusError(
                f"The upstream answered {upstream.status}.",
                upstream_status=upstream.status,
                upstream_body=error_body,
            )
        return upstream

    async def _relay_whole(
        self, upstream: UpstreamResponse, candidate: Candidate, exchange: Exchange
    ) -> web.Response:
        started = time.perf_counter()
        try:
            body = await upstream.read()
        finally:
            exchange.upstream_seconds += time.perf_counter() - started
        if upstream.status < 300:
            self._account_usage(_usage_of(body), candidate, exchange)
        headers = client_response_headers(upstream.headers)
        self._stamp(headers, exchange)
        return web.Response(body=body, status=upstream.status, headers=headers)

    async def _relay_stream(
        self,
        request: web.Request,
        upstream: UpstreamResponse,
        candidate: Candidate,
        exchange: Exchange,
        hide_usage: bool,
    ) -> web.StreamResponse:
        headers = client_response_headers(upstream.headers)
        headers["Cache-Control"] = "no-cache"
        self._stamp(headers, exchange)
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        framer = SseFramer(hide_usage=hide_usage)
        body = upstream.iter_body()
        try:
            while True:
                waited = time.perf_counter()
                try:
                    piece = await anext(body)
                except StopAsyncIteration:
                    break
                finally:
                    exchange.upstream_seconds += time.perf_counter() - waited
                out = framer.feed(piece)
                if out:
                    if exchange.first_byte_at is None:
                        exchange.first_byte_at = time.perf_counter()
                    await response.write(out)
            if not framer.done:
                await response.write(
                    error_event("The upstream ended the stream early.", "upstream_stream_cut")
                )
                exchange.status = 502
        except UpstreamError as error:
            exchange.status = 502 if not isinstance(error, UpstreamTimeoutError) else 504
            await response.write(
                error_event(error.message, error.instance_code or "upstream_error")
            )
        except ConnectionResetError:
            exchange.status = 499
            log.info("client disconnected mid-stream", extra={"request_id": exchange.request_id})
            return response
        finally:
            usage = framer.usage
            if usage is None:
                usage = {
                    "prompt_tokens": exchange.input_tokens,
                    "completion_tokens": framer.count_completion(Tokenizer(candidate.encoding)),
                }
            self._account_usage(usage, candidate, exchange)
        await response.write_eof()
        return response

    def _account_usage(
        self, usage: dict[str, Any] | None, candidate: Candidate, exchange: Exchange
    ) -> None:
        if usage:
            prompt = usage.get("prompt_tokens")
            completion = usage.get("completion_tokens")
            if isinstance(prompt, int):
                exchange.input_tokens = prompt
            if isinstance(completion, int):
                exchange.output_tokens = completion
        exchange.cost_usd = (
            exchange.input_tokens * candidate.price.input
            + exchange.output_tokens * candidate.price.output
        ) / 1000.0

    def _stamp(self, headers: dict[str, str], exchange: Exchange) -> None:
        headers["x-request-id"] = exchange.request_id
        headers["x-cache"] = "miss"
        overhead = exchange.overhead_seconds(time.perf_counter())
        headers["x-sidegate-overhead-ms"] = f"{overhead * 1000:.3f}"

    def _account(self, exchange: Exchange) -> None:
        now = time.perf_counter()
        metrics = self._metrics
        tenant = exchange.tenant.name
        status = str(exchange.status or 500)
        metrics.requests.labels(exchange.model, exchange.upstream, tenant, status).inc()
        if exchange.upstream != "-":
            if exchange.input_tokens:
                metrics.tokens.labels(exchange.model, tenant, "input").inc(exchange.input_tokens)
            if exchange.output_tokens:
                metrics.tokens.labels(exchange.model, tenant, "output").inc(exchange.output_tokens)
            if exchange.cost_usd:
                metrics.cost.labels(exchange.model, tenant).inc(exchange.cost_usd)
            metrics.request_duration.labels(exchange.model).observe(now - exchange.started)
            metrics.upstream_duration.labels(exchange.model, exchange.upstream).observe(
                exchange.upstream_seconds
            )
            if exchange.first_byte_at is not None:
                metrics.time_to_first_token.labels(exchange.model).observe(
                    exchange.first_byte_at - exchange.started
                )
        metrics.proxy_overhead.observe(exchange.overhead_seconds(now))
        self._access.request(exchange, latency_seconds=now - exchange.started)


def _rewrite(body: bytes, client_model: str, candidate: Candidate, *, add_usage: bool) -> bytes:
    """The body the upstream gets: its own model name, and usage asked for when we need it."""
    if not add_usage and candidate.upstream_model == client_model:
        return body
    payload = orjson.loads(body)
    payload["model"] = candidate.upstream_model
    if add_usage:
        options = payload.get("stream_options")
        payload["stream_options"] = {**(options or {}), "include_usage": True}
    return orjson.dumps(payload)


def _is_sse(upstream: UpstreamResponse) -> bool:
    return upstream.headers.get("Content-Type", "").startswith("text/event-stream")


def _usage_of(body: bytes) -> dict[str, Any] | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    usage = payload.get("usage") if isinstance(payload, dict) else None
    return usage if isinstance(usage, dict) else None
