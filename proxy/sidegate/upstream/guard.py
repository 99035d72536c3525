"""Upstream protection: an upstream's `rate_limit_rpm` and `max_concurrent_requests`.

`guard_upstreams` wraps the transport of every upstream that sets either, so the pipeline and
the pools are unchanged. A request that finds the upstream at its limit waits briefly, in a
bounded queue (`MAX_WAIT_SECONDS`, at most `max_concurrent_requests` waiting); past that it is
refused: 429 `rate_limit_exceeded` with `Retry-After` for the rate, 503 for concurrency. A slot
is held until the upstream's answer is closed (the whole stream, for a stream).

These limits protect one upstream from one Sidegate process: with `--workers N` each worker
gets 1/N of them (rounded up), and across replicas they add up (they are per replica, unlike
tenants' limits, because an upstream's capacity is usually sized per gateway node).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Final

from sidegate.errors import RateLimitError, UnavailableError
from sidegate.settings import Settings
from sidegate.upstream.headers import ClientHeaders, GatewayHeaders
from sidegate.upstream.pool import UpstreamPools
from sidegate.upstream.transport import SentRequest, Timeouts, Transport, UpstreamResponse

MAX_WAIT_SECONDS: Final = 1.0


class _Rate:
    """A token bucket holding a minute's worth; waits up to the bound for the next token."""

    def __init__(self, per_minute: float) -> None:
        self._capacity = per_minute
        self._per_second = per_minute / 60.0
        self._level = per_minute
        self._at = time.monotonic()

    def reserve(self) -> float:
        """Seconds to wait before sending, or raise when the wait would be too long."""
        now = time.monotonic()
        level = min(self._capacity, self._level + (now - self._at) * self._per_second)
        wait = max(0.0, (1.0 - level) / self._per_second)
        if wait > MAX_WAIT_SECONDS:
            raise RateLimitError(
                "The upstream is at its rate limit; please try again shortly.",
                headers={
                    "Retry-After": str(max(1, round(wait))),
                    "retry-after-ms": str(int(wait * 1000)),
                },
            )
        self._level, self._at = level - 1.0, now
        return wait


class _Slots:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_flight = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def take(self) -> None:
        if self._in_flight < self._limit and not self._waiting:
            self._in_flight += 1
            return
        if len(self._waiting) >= self._limit:
            raise _busy()
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), MAX_WAIT_SECONDS)
        except TimeoutError:
            if waiter.done():  # handed a slot just as the wait ran out: give it back
                self.give_back()
            else:
                waiter.cancel()
                self._waiting.remove(waiter)
            raise _busy() from None

    def give_back(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next in line
                return
        self._in_flight -= 1


def _busy() -> UnavailableError:
    return UnavailableError(
        "The upstream is at its concurrency limit; please try again shortly.",
        code="upstream_busy",
        headers={"Retry-After": "1", "retry-after-ms": "1000"},
    )


class _GuardedResponse:
    __slots__ = ("_done", "_inner", "_release", "headers", "status")

    def __init__(self, inner: UpstreamResponse, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release = release
        self._done = False
        self.status = inner.status
        self.headers: Mapping[str, str] = inner.headers

    def iter_body(self) -> AsyncIterator[bytes]:
        return self._inner.iter_body()

    async def read(self) -> bytes:
        return await self._inner.read()

    def read_now(self) -> bytes | None:
        return self._inner.read_now()

    async def push_body(
        self, sink: Callable[[bytes], bool], idle: Callable[[], None] | None = None
    ) -> bool:
        return await self._inner.push_body(sink, idle)

    def close(self) -> None:
        self._inner.close()
        if not self._done:
            self._done = True
            self._release()


class GuardedTransport:
    def __init__(self, inner: Transport, rpm: float | None, max_concurrent: int | None) -> None:
        self._inner = inner
        self._rate = _Rate(rpm) if rpm else None
        self._slots = _Slots(max_concurrent) if max_concurrent else None

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        if self._rate is not None:
            wait = self._rate.reserve()
            if wait:
                await asyncio.sleep(wait)
        slots = self._slots
        if slots is None:
            return await self._inner.send(method, url, headers, body, timeouts)
        await slots.take()
        try:
            response = await self._inner.send(method, url, headers, body, timeouts)
        except BaseException:
            slots.give_back()
            raise
        return _GuardedResponse(response, slots.give_back)

    def send_now(
        self,
        method: str,
        url: str,
        client_headers: ClientHeaders,
        gateway: GatewayHeaders,
        body: bytes,
        timeouts: Timeouts,
    ) -> SentRequest | None:
        return None  # the limits may need a wait; and a slot must be held around the send

    async def close(self) -> None:
        await self._inner.close()


def guard_upstreams(pools: UpstreamPools, settings: Settings) -> None:
    """Wrap the transport of each upstream that sets `rate_limit_rpm` or
    `max_concurrent_requests`; each worker process takes its share."""
    workers = settings.server.workers
    for name, upstream in settings.upstreams.items():
        rpm, concurrent = upstream.rate_limit_rpm, upstream.max_concurrent_requests
        if rpm is None and concurrent is None:
            continue
        pool = pools[name]
        pool.transport = GuardedTransport(
            pool.transport,
            rpm / workers if rpm else None,
            -(-concurrent // workers) if concurrent else None,
        )
