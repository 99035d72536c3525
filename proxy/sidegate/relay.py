"""Relaying an upstream's event stream to the client as its pieces arrive: on the lean server
from the upstream connection's callback (`push_events`, and from the head on `OpenOnHead`),
on aiohttp's server from the task (`pull_events`), whose writes are coroutines."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from sidegate.exchange import Exchange
from sidegate.lean_server.messages import LeanStream, open_relayed_stream
from sidegate.upstream.sse import SseFramer
from sidegate.upstream.transport import UpstreamResponse


async def push_events(
    upstream: UpstreamResponse,
    response: LeanStream,
    framer: SseFramer,
    exchange: Exchange,
    held: list[bytes] | None,
) -> None:
    """Relay on the lean server: each piece is framed and written inside the upstream
    connection's callback, with no task wake-up between the read and the write. With `held`,
    the events that end the stream go there instead of out."""

    relay = event_relay(response, framer, exchange, held)
    while True:
        waited = time.perf_counter()
        try:
            ended = await upstream.push_body(relay, response.send_pending)
        finally:
            exchange.upstream_seconds += time.perf_counter() - waited
        if ended:
            return
        await response.drain()  # the client lags (or has gone: ConnectionResetError)


def event_relay(
    response: LeanStream, framer: SseFramer, exchange: Exchange, held: list[bytes] | None
) -> Callable[[bytes], bool]:
    """The sink `push_body` hands each piece to: its complete events framed and written."""

    def relay(piece: bytes) -> bool:
        began = time.perf_counter()
        out = framer.feed(piece)
        go_on = True
        if out:
            if exchange.first_byte_at is None:
                exchange.first_byte_at = began
            if not framer.done:
                go_on = response.write_now(out)
            elif held is not None:
                held.append(out)
            else:
                go_on = response.end_now(out)
        # The wait around `push_body` is counted as the upstream's time; this is our own.
        exchange.upstream_seconds -= time.perf_counter() - began
        return go_on

    return relay


class OpenOnHead:
    """A `HeadHook` that opens the client's stream the moment a streamed answer's head comes
    in, in the upstream connection's callback, and relays the events that came with it.

    The head and first event often arrive in one read. The task waiting for the head would
    wake in a later turn of the loop, resume its chain of coroutines and set the relay up
    before it wrote anything, on a core that has idled (bench/README.md); done here, the
    client has both in the same turn. When the head comes alone, the task is woken only once
    the first event has been relayed here (`LeanResponse.on_head`), so that its resumption
    does not come between that event's read and its write either.

    Only a 2xx event stream relayed as it comes (no stream kept for the cache) on the lean
    server is opened here; any other answer is left to the task, as is all that follows (the
    task goes on from `response` and `framer`).
    """

    __slots__ = ("_exchange", "_lines", "_request", "_sent_at", "framer", "response")

    def __init__(
        self,
        request: web.Request,
        exchange: Exchange,
        lines: bytes,
        hide_usage: bool,
        sent_at: float,
    ) -> None:
        self._request = request
        self._exchange = exchange
        self._lines = lines  # the limits' header lines
        self._sent_at = sent_at  # `time.perf_counter()` when the request went upstream
        # Made now, while the upstream works, rather than between its head and the first event.
        self.framer = SseFramer(hide_usage=hide_usage)
        self.response: LeanStream | None = None  # set once the stream is open

    def __call__(self, upstream: UpstreamResponse) -> Callable[[bytes], bool] | None:
        if upstream.status >= 300:
            return None
        exchange = self._exchange
        # Time inside Sidegate until the request went upstream: the wait since is the
        # upstream's, not yet counted in the exchange.
        overhead = self._sent_at - exchange.started - exchange.upstream_seconds
        try:
            response = open_relayed_stream(
                self._request,
                upstream.status,
                upstream.headers,
                exchange.request_id,
                exchange.cache,
                overhead,
                self._lines,
            )
        except Exception:  # the client has gone, say: the task meets it again
            return None
        if response is None:  # no event stream (or not read natively): the task's to answer
            return None
        self.response = response
        return self._relay_now

    def _relay_now(self, piece: bytes) -> bool:
        """The sink until the task takes over (`event_relay`'s work, in one call): the head
        waits to join the first events; with them in hand, both go now rather than at the
        end of the loop's turn. A stream that ended in them leaves whole, its body's end
        joined (`LeanStream.end_now`), in one write."""
        began = time.perf_counter()
        framer = self.framer
        out = framer.feed(piece)
        go_on = True
        if out:
            exchange = self._exchange
            if exchange.first_byte_at is None:
                exchange.first_byte_at = began
            response = self.response
            assert response is not None  # the sink is only given out with it
            if framer.done:
                go_on = response.end_now(out)
            else:
                go_on = response.write_through(out)
        # The wait around the upstream is counted as the upstream's time; this is our own.
        self._exchange.upstream_seconds -= time.perf_counter() - began
        return go_on


def is_event_stream(upstream: UpstreamResponse) -> bool:
    return upstream.headers.get("Content-Type", "").startswith("text/event-stream")


async def pull_events(
    upstream: UpstreamResponse,
    response: web.StreamResponse,
    framer: SseFramer,
    exchange: Exchange,
    held: list[bytes] | None,
) -> None:
    """Relay on aiohttp's server, whose writes are coroutines (`held` as for `push_events`)."""
    body = upstream.iter_body()
    while True:
        waited = time.perf_counter()
        try:
            piece = await anext(body)
        except StopAsyncIteration:
            return
        finally:
            exchange.upstream_seconds += time.perf_counter() - waited
        out = framer.feed(piece)
        if out:
            if exchange.first_byte_at is None:
                exchange.first_byte_at = time.perf_counter()
            if held is not None and framer.done:
                held.append(out)
            else:
                await response.write(out)
