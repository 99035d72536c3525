"""Answering the client: an upstream's answer relayed whole or as its events arrive, or a
cached answer replayed, each accounted for (tokens, cost) and stamped with the gateway's own
headers. `Pipeline` decides where an answer comes from; this is how it reaches the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from aiohttp import web

from sidegate._native import usage_counts
from sidegate.admission import Ticket
from sidegate.cache import CachedAnswer, CacheKey, ResponseCache
from sidegate.errors import UpstreamError, UpstreamTimeoutError
from sidegate.exchange import Exchange
from sidegate.inspection import RequestFacts
from sidegate.lean_server.messages import (
    LeanStream,
    open_relayed_stream,
    open_stream,
    whole_answer,
)
from sidegate.relay import OpenOnHead, pull_events, push_events
from sidegate.replay import assemble_stream, replay_stream
from sidegate.routing import Candidate
from sidegate.tokens import Tokenizer
from sidegate.upstream.headers import client_response_headers
from sidegate.upstream.sse import SseFramer, error_event
from sidegate.upstream.transport import UpstreamResponse

log = logging.getLogger("sidegate.access")

# The largest token count an answer may report: a negative or larger one is no real usage, and
# would not fit the spend table's INTEGER nor the access log's number (it stopped the spend
# log's writer).
_MAX_REPORTED_TOKENS: Final = 2**53


class Answers:
    """Relays answers to clients; an answer that is to be kept goes into `cache` once whole."""

    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache

    async def relay_whole(
        self,
        request: web.Request,
        upstream: UpstreamResponse,
        candidate: Candidate,
        exchange: Exchange,
        ticket: Ticket,
        store: CacheKey | None,
    ) -> web.StreamResponse:
        """An unstreamed answer (or a streamed request's answer that is no event stream),
        kept under `store` when it succeeded."""
        body = upstream.read_now()
        if body is None:
            started = time.perf_counter()
            try:
                body = await upstream.read()
            finally:
                exchange.upstream_seconds += time.perf_counter() - started
        if upstream.status < 300:
            prompt, completion = usage_counts(body)
            account_usage(prompt, completion, candidate, exchange)
            if store is not None:
                await self._cache.put(
                    store.value,
                    CachedAnswer(
                        exchange.kind, body, exchange.input_tokens, exchange.output_tokens
                    ),
                )
        lines = ticket.header_lines
        headers = client_response_headers(upstream.headers, lines)
        self._stamp(headers, exchange)
        return whole_answer(request, upstream.status, headers, body, lines)

    async def relay_stream(
        self,
        request: web.Request,
        upstream: UpstreamResponse,
        candidate: Candidate,
        exchange: Exchange,
        ticket: Ticket,
        hide_usage: bool,
        store: CacheKey | None,
        opened: OpenOnHead | None = None,
    ) -> web.StreamResponse:
        """`opened`: the hook that may have opened the stream from the connection's callback
        already (then the relay goes on from its response and framer)."""
        response: web.StreamResponse | LeanStream
        if opened is not None and opened.response is not None:
            response, framer = opened.response, opened.framer
        else:
            response = await self._open_stream(request, upstream, exchange, ticket)
            framer = SseFramer(hide_usage=hide_usage)
        answer: web.StreamResponse = response  # type: ignore[assignment]  # (LeanStream: see it)
        complete = False
        # A stream to be stored keeps its last events (`[DONE]` and what came with it) until
        # it is: a client that asks again as soon as it has them must find the answer.
        held: list[bytes] | None = [] if store is not None and upstream.status < 300 else None
        try:
            if isinstance(response, LeanStream):
                await push_events(upstream, response, framer, exchange, held)
            else:
                await pull_events(upstream, response, framer, exchange, held)
            if framer.done:
                complete = True
            else:
                exchange.status, exchange.error = 502, "upstream_stream_cut"
                await response.write(
                    error_event("The upstream ended the stream early.", exchange.error)
                )
        except UpstreamError as error:
            # After every event, [DONE] included, went out (the client's body ended with it on
            # the lean server) only the upstream's own end failed: the answer is whole.
            complete = framer.done and not held
            if not complete:
                await _fail_stream(response, exchange, error, held)
                held = None
        except (ConnectionResetError, asyncio.CancelledError) as gone:
            # With every event sent, [DONE] included, the client had the whole answer: the
            # OpenAI SDKs close there without reading the body's end, which the upstream may
            # send a while later.
            _client_left(exchange, upstream.status if framer.done and not held else None)
            if isinstance(gone, asyncio.CancelledError):
                raise
            return answer
        finally:
            usage = framer.usage
            if usage is None:
                counted = framer.count_completion(Tokenizer(candidate.encoding))
                usage = {"prompt_tokens": exchange.input_tokens, "completion_tokens": counted}
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            account_usage(prompt, completion, candidate, exchange)
        if complete and store is not None and upstream.status < 300:
            # `usage` is counted here when the upstream sent none: a whole-answer hit needs it.
            assembled = assemble_stream(exchange.kind, framer.payloads, usage)
            if assembled is not None:
                await self._cache.put(
                    store.value,
                    CachedAnswer(
                        exchange.kind, assembled, exchange.input_tokens, exchange.output_tokens
                    ),
                )
        if held:
            await response.write(b"".join(held))
        await response.write_eof()
        return answer

    async def _open_stream(
        self, request: web.Request, upstream: UpstreamResponse, exchange: Exchange, ticket: Ticket
    ) -> web.StreamResponse | LeanStream:
        lines = ticket.header_lines
        response = open_relayed_stream(
            request,
            upstream.status,
            upstream.headers,
            exchange.request_id,
            exchange.cache,
            exchange.overhead_seconds(time.perf_counter()),
            lines,
        )
        if response is not None:
            return response
        headers = client_response_headers(upstream.headers, lines)
        headers["Cache-Control"] = "no-cache"
        self._stamp(headers, exchange)
        return await open_stream(request, upstream.status, headers, lines)

    async def from_cache(
        self,
        request: web.Request,
        answer: CachedAnswer,
        facts: RequestFacts,
        exchange: Exchange,
        ticket: Ticket,
    ) -> web.StreamResponse:
        exchange.cache = "hit"
        exchange.served_model = exchange.model
        exchange.input_tokens = answer.input_tokens
        exchange.output_tokens = answer.output_tokens
        exchange.cost_usd = 0.0  # a hit costs no upstream call
        headers: dict[str, str] = {}
        self._stamp(headers, exchange)
        lines = ticket.header_lines
        if not facts.stream or answer.kind == "embeddings":
            headers["Content-Type"] = "application/json"
            return whole_answer(request, 200, headers, answer.body, lines)
        headers["Content-Type"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        response = await open_stream(request, 200, headers, lines)
        exchange.first_byte_at = time.perf_counter()
        await response.write(replay_stream(answer, include_usage=facts.include_usage))
        await response.write_eof()
        return response

    def _stamp(self, headers: dict[str, str], exchange: Exchange) -> None:
        """The gateway's own headers (the limits' come as the ticket's lines)."""
        headers["x-request-id"] = exchange.request_id
        headers["x-cache"] = exchange.cache
        overhead = exchange.overhead_seconds(time.perf_counter())
        headers["x-sidegate-overhead-ms"] = f"{overhead * 1000:.3f}"


def account_usage(
    prompt: object, completion: object, candidate: Candidate, exchange: Exchange
) -> None:
    """The answer's own token counts where it reported them (integers within reason; else the
    request keeps the counts Sidegate made), and its cost."""
    if type(prompt) is int and 0 <= prompt <= _MAX_REPORTED_TOKENS:
        exchange.input_tokens = prompt
    if type(completion) is int and 0 <= completion <= _MAX_REPORTED_TOKENS:
        exchange.output_tokens = completion
    exchange.cost_usd = (
        exchange.input_tokens * candidate.price.input
        + exchange.output_tokens * candidate.price.output
    ) / 1000.0


def _client_left(exchange: Exchange, whole_answer_status: int | None) -> None:
    """The client went away during a stream: after all of it (`whole_answer_status`, the
    answer's status) or in the middle (499)."""
    if whole_answer_status is not None:
        exchange.status = whole_answer_status
        return
    exchange.status = 499
    log.info("client disconnected mid-stream", extra={"request_id": exchange.request_id})


async def _fail_stream(
    response: web.StreamResponse | LeanStream,
    exchange: Exchange,
    error: UpstreamError,
    held: list[bytes] | None,
) -> None:
    """End a stream the upstream failed with an error event, after the events held back."""
    exchange.status = 504 if isinstance(error, UpstreamTimeoutError) else 502
    exchange.error = error.instance_code or "upstream_error"
    ended = b"".join(held or ())  # the upstream failed after its last event
    await response.write(ended + error_event(error.message, exchange.error))
