"""The request pipeline every endpoint family shares (DESIGN.md §2).

Routes parse nothing themselves: they hand the raw request and their endpoint kind here. The
pipeline inspects the body, resolves the model, admits the request (limits, budgets), answers
from cache when it can, forwards to the best endpoint with failover, and has the answer relayed
(streaming or not) and accounted for (`sidegate.answers`). Each concern sits behind its own
seam (`Admission`, `ResponseCache`, `Tracing`, `Recorder`), so this module only orders them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from sidegate.admission import Admission, Ticket
from sidegate.answers import Answers
from sidegate.auth import Tenant
from sidegate.cache import CacheKey, ResponseCache
from sidegate.context import REQUEST_ID_KEY, TENANT_KEY
from sidegate.early import FirstAttempt, HeadStart
from sidegate.errors import (
    BodyTooLargeError,
    ProxyError,
    UpstreamError,
    UpstreamStatusError,
)
from sidegate.exchange import Exchange
from sidegate.inspection import (
    INLINE_MAX_BYTES,
    Endpoint,
    RequestFacts,
    inspect_request,
    inspect_request_off_loop,
)
from sidegate.lean_server.messages import (
    body_in_hand,
)
from sidegate.observability.metrics import Metrics, Values
from sidegate.observability.recorder import Recorder
from sidegate.observability.tracing import NoTracing, Tracing
from sidegate.relay import OpenOnHead, is_event_stream
from sidegate.routing import Candidate, Router
from sidegate.upstream.body import rewrite_body
from sidegate.upstream.headers import (
    ClientHeaders,
    upstream_request_headers,
)
from sidegate.upstream.pool import Endpoint as PoolEndpoint
from sidegate.upstream.pool import UpstreamPools
from sidegate.upstream.transport import UpstreamResponse

_PATHS: dict[Endpoint, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}


@dataclass(frozen=True, slots=True)
class Seams:
    admission: Admission
    cache: ResponseCache
    tracing: Tracing
    recorder: Recorder


class Pipeline:
    def __init__(
        self, router: Router, pools: UpstreamPools, metrics: Metrics, seams: Seams
    ) -> None:
        self._router = router
        self._pools = pools
        self._metrics = metrics
        self._admission = seams.admission
        self._cache = seams.cache
        self._answers = Answers(seams.cache)
        self._tracing = seams.tracing
        self._recorder = seams.recorder
        self._active = Values(metrics.active_requests)  # labels() per request costs more
        self._traced = not isinstance(seams.tracing, NoTracing)  # a span must open first

    async def handle(
        self, request: web.Request, kind: Endpoint, early: HeadStart | None = None
    ) -> web.StreamResponse:
        if early is None:
            exchange = Exchange(
                request[REQUEST_ID_KEY], request[TENANT_KEY], kind, time.perf_counter()
            )
        else:
            exchange = early.exchange
            exchange.request_id = request[REQUEST_ID_KEY]
        try:
            with self._tracing.request(request.headers, exchange):
                response = await self._handle(request, kind, exchange, early)
                exchange.status = exchange.status or response.status  # the span records it
            return response
        except ProxyError as error:
            exchange.fail(error)
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            exchange.status = exchange.status or 499  # the client went away (mid-answer)
            raise
        finally:
            self._recorder.finish(exchange)

    def refused(
        self, request: web.Request, kind: Endpoint, tenant: Tenant, error: ProxyError
    ) -> None:
        """Account for a request refused before it reached the pipeline (a rejected key) as
        for any other: its span, its counts and its one access line."""
        exchange = Exchange(request[REQUEST_ID_KEY], tenant, kind, time.perf_counter())
        try:
            with self._tracing.request(request.headers, exchange):
                raise error  # the span records the refusal as it records any error
        except ProxyError:
            exchange.fail(error)
        finally:
            self._recorder.finish(exchange)

    def start_early(
        self, headers: ClientHeaders, body: bytes, kind: Endpoint, exchange: Exchange
    ) -> HeadStart:
        """The steps up to the upstream write, for a request whose head carried `headers` and
        whole `body`, done at once where none of them waits (see `sidegate.early`);
        `handle(request, kind, early)` takes over from there. The head start's record is made
        after the write, which nothing in it is needed for."""
        if self._traced or len(body) > INLINE_MAX_BYTES:
            return HeadStart(exchange)
        # Whatever fails here is left to the task, which meets it again where every request
        # does (nothing before admission has effects; after it, the ticket is the task's).
        try:
            facts, candidates = self._inspect_now(body, kind, exchange)
        except Exception:
            return HeadStart(exchange)
        primary = candidates[0]
        try:
            ticket = self._admission.admit_now(exchange, facts, primary)
        except ProxyError as refusal:
            return HeadStart(exchange, body, facts, candidates, refusal)
        except Exception:
            return HeadStart(exchange, body, facts, candidates)
        if ticket is None:
            return HeadStart(exchange, body, facts, candidates)
        key = None
        # A cache that hashes no bodies keys nothing (`ResponseCache.key` needs the hash).
        if self._cache.hashes_bodies:
            try:
                key = self._cache.key(exchange, facts, primary, headers.get("Cache-Control"))
            except Exception:
                return HeadStart(exchange, body, facts, candidates, None, ticket)
        first = None
        if key is None or not key.lookup:
            first = self._send_first(headers, kind, body, facts, primary)
        return HeadStart(exchange, body, facts, candidates, None, ticket, key, True, first)

    def _inspect_now(
        self, body: bytes, kind: Endpoint, exchange: Exchange
    ) -> tuple[RequestFacts, Sequence[Candidate]]:
        hashes = self._cache.hashes_bodies
        facts = inspect_request(body, kind, hash_body=hashes)
        exchange.model = facts.model
        exchange.stream = facts.stream
        candidates = self._router.candidates(facts.model)
        primary = candidates[0]
        if not primary.encoding_by_name:
            facts = inspect_request(body, kind, primary.encoding, hash_body=hashes)
        exchange.input_tokens = facts.prompt_tokens
        return facts, candidates

    def _send_first(
        self,
        client_headers: ClientHeaders,
        kind: Endpoint,
        body: bytes,
        facts: RequestFacts,
        candidate: Candidate,
    ) -> FirstAttempt | None:
        """The first attempt's request, written now to an idle connection when there is one."""
        pool = self._pools[candidate.upstream]
        hide_usage = facts.stream and kind != "embeddings" and not facts.include_usage
        try:
            body = rewrite_body(body, facts, candidate, add_usage=hide_usage)
            endpoints = pool.ordered()
            if not endpoints:
                return FirstAttempt(body, endpoints)
            endpoint = endpoints[0]
            sent = pool.transport.send_now(
                "POST",
                endpoint.base_url + _PATHS[kind],
                client_headers,
                pool.gateway_headers,
                body,
                pool.timeouts,
            )
        except Exception:  # the task meets it again, where it always has
            return None
        if sent is None:
            return FirstAttempt(body, endpoints)
        endpoint.outstanding += 1
        return FirstAttempt(body, endpoints, sent, time.perf_counter())

    async def _handle(
        self, request: web.Request, kind: Endpoint, exchange: Exchange, early: HeadStart | None
    ) -> web.StreamResponse:
        if early is not None and early.facts is not None:
            body, facts, candidates = early.body, early.facts, early.candidates
            if early.refusal is not None:
                raise early.refusal
        else:
            body, facts, candidates = await self._inspect(request, kind, exchange)
        primary = candidates[0]
        admission = self._admission
        ticket = (
            (early.ticket if early is not None else None)
            or admission.admit_now(exchange, facts, primary)
            or await admission.admit(exchange, facts, primary)
        )
        active = self._active(facts.model)
        active.inc(1)
        try:
            if early is not None and early.keyed:
                key = early.key
            else:
                cache_control = request.headers.get("Cache-Control")
                key = self._cache.key(exchange, facts, primary, cache_control)
            if key is not None and key.lookup:
                answer = await self._cache.get(key.value)
                result = "hit" if answer is not None else "miss"
                self._metrics.cache_requests.labels("exact", result).inc()
                if answer is not None:  # no upstream time: none is observed
                    return await self._answers.from_cache(request, answer, facts, exchange, ticket)
            store = key if key is not None and key.store else None
            first = early.first if early is not None else None
            return await self._forward(
                request, kind, body, facts, candidates, exchange, ticket, store, first
            )
        except ProxyError as error:
            # Every answer carries the limits' headers, errors after admission included.
            for name, value in ticket.headers.items():
                error.headers.setdefault(name, value)
            raise
        finally:
            active.inc(-1)
            ticket.settle(exchange)

    async def _inspect(
        self, request: web.Request, kind: Endpoint, exchange: Exchange
    ) -> tuple[bytes, RequestFacts, Sequence[Candidate]]:
        body = body_in_hand(request)
        if body is None:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                # aiohttp's refusal, as ours: the request's record and headers take it in.
                raise BodyTooLargeError() from None
        if len(body) <= INLINE_MAX_BYTES:
            facts, candidates = self._inspect_now(body, kind, exchange)
            return body, facts, candidates
        hashes = self._cache.hashes_bodies
        facts = await inspect_request_off_loop(body, kind, hash_body=hashes)
        exchange.model = facts.model
        exchange.stream = facts.stream
        candidates = self._router.candidates(facts.model)
        primary = candidates[0]
        if not primary.encoding_by_name:
            facts = await inspect_request_off_loop(body, kind, primary.encoding, hash_body=hashes)
        exchange.input_tokens = facts.prompt_tokens
        return body, facts, candidates

    async def _forward(
        self,
        request: web.Request,
        kind: Endpoint,
        body: bytes,
        facts: RequestFacts,
        candidates: Sequence[Candidate],
        exchange: Exchange,
        ticket: Ticket,
        store: CacheKey | None,
        first: FirstAttempt | None = None,
    ) -> web.StreamResponse:
        """`first`: the first candidate's attempts as the head start prepared them (its
        first request perhaps sent)."""
        hide_usage = facts.stream and kind != "embeddings" and not facts.include_usage
        last_error: UpstreamError | None = None
        pending = first if first is not None and first.sent is not None else None
        for candidate in candidates:
            pool = self._pools[candidate.upstream]
            if first is not None:
                upstream_body, endpoints, first = first.body, first.endpoints, None
            else:
                upstream_body = rewrite_body(body, facts, candidate, add_usage=hide_usage)
                endpoints = pool.ordered()
            for endpoint in endpoints:
                exchange.attempts.append(endpoint.base_url)
                sent, pending = pending, None
                opened = None
                if sent is not None and sent.sent is not None and facts.stream and store is None:
                    opened = OpenOnHead(
                        request, exchange, ticket.header_lines, hide_usage, sent.sent_at
                    )
                    sent.sent.on_head(opened)
                with self._tracing.attempt(exchange, pool.name, endpoint.base_url) as trace:
                    headers: Sequence[tuple[str, str]] = ()
                    if sent is None:
                        headers = upstream_request_headers(request.headers, pool.gateway_headers)
                    if trace:  # our span's traceparent replaces the client's (its parent)
                        names = {name.lower() for name, _ in trace}
                        headers = [h for h in headers if h[0].lower() not in names] + trace
                    try:
                        upstream = await self._attempt(
                            pool.name, endpoint, kind, headers, upstream_body, exchange, sent
                        )
                    except UpstreamError as error:
                        # A timeout too: nothing has reached the client yet, and a hung
                        # endpoint is what failover is for (the last failure is the answer).
                        pool.mark_failed(endpoint)
                        exchange.upstream = candidate.upstream  # tried, if not answered
                        last_error = error
                        continue
                    pool.mark_ok(endpoint)
                    exchange.upstream = candidate.upstream
                    exchange.endpoint = endpoint.base_url
                    exchange.served_model = candidate.model
                    # Never store a fallback's answer under the primary model's key.
                    keep = store if candidate is candidates[0] else None
                    try:
                        # A stream the head hook opened is one, whatever else says.
                        opened_stream = opened is not None and opened.response is not None
                        if facts.stream and (opened_stream or is_event_stream(upstream)):
                            return await self._answers.relay_stream(
                                request,
                                upstream,
                                candidate,
                                exchange,
                                ticket,
                                hide_usage,
                                keep,
                                opened,
                            )
                        return await self._answers.relay_whole(
                            request, upstream, candidate, exchange, ticket, keep
                        )
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
        headers: Sequence[tuple[str, str]],
        body: bytes,
        exchange: Exchange,
        early: FirstAttempt | None = None,
    ) -> UpstreamResponse:
        """Send to one endpoint (or take the answer to what `early` sent to it); a 5xx before
        any byte of the answer counts as a failure."""
        pool = self._pools[upstream_name]
        if early is not None and early.sent is not None:
            sent = early.sent_at  # its `outstanding` was counted when it was sent
            answer = early.sent.answer()
        else:
            endpoint.outstanding += 1
            sent = time.perf_counter()
            answer = pool.transport.send(
                "POST", endpoint.base_url + _PATHS[kind], headers, body, pool.timeouts
            )
        try:
            upstream = await answer
        except BaseException:
            endpoint.outstanding -= 1
            raise
        finally:
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
