"""Relaying an upstream's event stream to the client as its pieces arrive: on the lean server
from the upstream connection's callback (`push_events`), on aiohttp's server from the task
(`pull_events`), whose writes are coroutines."""

from __future__ import annotations

import time

from aiohttp import web

from sidegate.exchange import Exchange
from sidegate.lean_server.messages import LeanStream
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

    def relay(piece: bytes) -> bool:
        began = time.perf_counter()
        out = framer.feed(piece)
        go_on = True
        if out:
            if exchange.first_byte_at is None:
                exchange.first_byte_at = began
            if held is not None and framer.done:
                held.append(out)
            else:
                go_on = response.write_now(out)
        # The wait around `push_body` is counted as the upstream's time; this is our own.
        exchange.upstream_seconds -= time.perf_counter() - began
        return go_on

    while True:
        waited = time.perf_counter()
        try:
            ended = await upstream.push_body(relay, response.send_pending)
        finally:
            exchange.upstream_seconds += time.perf_counter() - waited
        if ended:
            return
        await response.drain()  # the client lags (or has gone: ConnectionResetError)


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
