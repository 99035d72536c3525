"""One keep-alive HTTP/1.1 connection to an upstream, and the response being read from it.

`LeanConnection` is the socket's `asyncio.Protocol`; it feeds every byte to one llhttp response
parser (httptools) and hands the parser's callbacks to the `LeanResponse` in flight. The response
buffers body pieces for the consumer and pauses the socket while the consumer lags.

Waiting uses one future per wait, never `asyncio.wait_for` (a task per call), and the read timeout
is watched by one timer per connection that is re-armed only when it fires: a timer handle per
wait would cost more than the rest of a small request's parsing. This module is on the
per-request hot path, and its cost is the point of the lean transport.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from sidegate.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamResetError,
    UpstreamTimeoutError,
)

if TYPE_CHECKING:
    from sidegate.upstream.lean_pool import EndpointPool

HEADER_BLOCK_LIMIT: Final = 64 * 1024


class _HeaderBlockTooLargeError(Exception):
    """Raised inside a parser callback to stop parsing an oversized header block at once."""


class _InterimResponseError(Exception):
    """A 101 answer: we never ask to upgrade, so the stream is no longer HTTP we can read."""


class LeanConnection(asyncio.Protocol):
    """The socket side: parser callbacks land here and are forwarded to the current response."""

    __slots__ = (
        "_loop",
        "_parser",
        "_timer",
        "_timer_when",
        "closed",
        "idle_since",
        "last_rx",
        "requests",
        "response",
        "reusable",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: LeanResponse | None = None
        self.closed = False
        # False once the connection must not carry another request (peer said close, stray
        # bytes, a response abandoned half-read, a HEAD answer the parser could not frame).
        self.reusable = True
        self.requests = 0
        self.idle_since = 0.0
        self.last_rx = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._stop_watching()
        response = self.response
        if response is not None:
            response.on_connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_rx = self._loop.time()
        response = self.response
        if response is None or response.complete:
            # Bytes nobody asked for: the framing can no longer be trusted.
            self.reusable = False
            self.abort()
            return
        response.received_any = True
        if not response.headers_done:
            response.head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeaderBlockTooLargeError):
                self._protocol_error(response, "the upstream sent an oversized header block")
            elif isinstance(exc.__context__, _InterimResponseError):
                self._protocol_error(response, "the upstream switched protocols unasked")
            else:
                raise
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._protocol_error(response, f"the upstream sent malformed HTTP: {exc}")
        else:
            if not response.headers_done and response.head_bytes > HEADER_BLOCK_LIMIT:
                self._protocol_error(response, "the upstream sent an oversized header block")

    # httptools callbacks (called from feed_data, so self.response is set)

    def on_message_begin(self) -> None:
        response = self.response
        if response is not None and response.complete:
            self.reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        assert response is not None
        response.raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))
        response.header_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        status = self._parser.get_status_code()
        if response.header_bytes > HEADER_BLOCK_LIMIT:
            raise _HeaderBlockTooLargeError
        if status < 200:
            if status == 101:
                raise _InterimResponseError
            # 100 Continue / 103 Early Hints: the real answer follows on the same stream.
            response.raw_headers.clear()
            response.header_bytes = 0
            response.interim = True
            return
        response.on_headers(status, self._parser.get_http_version())

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        response.on_piece(body)

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        if response.interim:
            response.interim = False
            return
        if not self._parser.should_keep_alive():
            self.reusable = False
        response.on_complete()

    # helpers

    def usable(self) -> bool:
        transport = self.transport
        return (
            self.reusable
            and not self.closed
            and transport is not None
            and not transport.is_closing()
        )

    def watch(self, deadline: float) -> None:
        """Make sure the current response's idle check runs no later than `deadline`."""
        timer = self._timer
        if timer is not None:
            if self._timer_when <= deadline:
                return  # an earlier check is armed; it re-arms for the rest when it fires
            timer.cancel()
        self._timer_when = deadline
        self._timer = self._loop.call_at(deadline, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        response = self.response
        if response is not None:
            response.check_idle(self)

    def _stop_watching(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self) -> None:
        self.reusable = False
        self._stop_watching()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    def _protocol_error(self, response: LeanResponse, message: str) -> None:
        response.fail(UpstreamProtocolError(message))
        self.abort()


class LeanResponse:
    """An upstream answer: status and headers once they arrived, then the body as pieces.

    Implements `sidegate.upstream.transport.UpstreamResponse`; the response is its own body
    iterator, so no async generator (and no generator finaliser) is created per request.
    """

    __slots__ = (
        "_buffered",
        "_conn",
        "_high_water",
        "_loop",
        "_low_water",
        "_paused",
        "_pieces",
        "_pool",
        "_read_timeout",
        "_wait_start",
        "_waiter",
        "close_delimited",
        "complete",
        "error",
        "head_bytes",
        "head_request",
        "header_bytes",
        "headers",
        "headers_done",
        "http_version",
        "interim",
        "raw_headers",
        "received_any",
        "status",
    )

    def __init__(
        self,
        conn: LeanConnection,
        pool: EndpointPool,
        *,
        read_timeout: float,
        max_buffered: int,
        head_request: bool,
    ) -> None:
        self._conn: LeanConnection | None = conn
        self._pool = pool
        self._loop = pool.loop
        self._read_timeout = read_timeout
        self._high_water = max_buffered
        self._low_water = max_buffered // 4
        self._pieces: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._wait_start = 0.0
        self.head_request = head_request
        self.status = 0
        self.http_version = ""
        # Declared as the interface's type; the value is a CIMultiDictProxy (getall works).
        self.headers: Mapping[str, str] = _EMPTY_HEADERS
        self.raw_headers: list[tuple[str, str]] = []
        self.header_bytes = 0
        self.head_bytes = 0
        self.headers_done = False
        self.interim = False
        self.close_delimited = False
        self.complete = False
        self.received_any = False
        self.error: UpstreamError | None = None

    # UpstreamResponse

    def iter_body(self) -> LeanResponse:
        return self

    def __aiter__(self) -> LeanResponse:
        return self

    async def __anext__(self) -> bytes:
        while True:
            pieces = self._pieces
            if pieces:
                piece = pieces.popleft()
                self._buffered -= len(piece)
                if self._paused and self._buffered <= self._low_water:
                    self._resume()
                return piece
            if self.error is not None:
                self.close()
                raise self.error
            if self.complete:
                self.close()
                raise StopAsyncIteration
            await self._wait()

    async def read(self) -> bytes:
        if not self.complete:
            return b"".join([piece async for piece in self])
        if self.error is not None:
            self.close()
            raise self.error
        pieces = self._pieces
        body = pieces.popleft() if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        self._buffered = 0
        self.close()
        return body

    def close(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        conn.response = None
        if not self.complete or self.error is not None or self.head_request:
            # Never pool a connection whose framing is unknown: discard it.
            conn.reusable = False
        elif self._paused:
            self._resume_conn(conn)
        self._pool.release(conn)

    # used by the transport

    async def wait_head(self) -> None:
        """Return once status and headers arrived; raise the failure that came first."""
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    def detach(self) -> LeanConnection | None:
        """Give up the connection without releasing it (the caller reuses its pool slot)."""
        conn = self._conn
        self._conn = None
        if conn is not None:
            conn.response = None
        return conn

    @property
    def closed_before_answer(self) -> bool:
        """The peer closed without sending a byte: the request may be retried elsewhere."""
        return isinstance(self.error, UpstreamResetError) and not self.received_any

    # called by LeanConnection

    def on_headers(self, status: int, http_version: str) -> None:
        self.status = status
        self.http_version = http_version
        headers = CIMultiDictProxy(CIMultiDict(self.raw_headers))
        self.headers = headers
        self.close_delimited = (
            "Content-Length" not in headers
            and "chunked" not in headers.get("Transfer-Encoding", "").lower()
        )
        self.headers_done = True
        if self.head_request:
            # llhttp cannot be told the request was HEAD and would wait for Content-Length
            # bytes that never come; the answer is complete now, the connection unusable.
            self.complete = True
            conn = self._conn
            if conn is not None:
                conn.reusable = False
        self._wake()

    def on_piece(self, piece: bytes) -> None:
        if self.complete:
            return
        self._pieces.append(piece)
        self._buffered += len(piece)
        if not self._paused and self._buffered > self._high_water:
            conn = self._conn
            if conn is not None and conn.transport is not None:
                conn.transport.pause_reading()
                self._paused = True
        self._wake()

    def on_complete(self) -> None:
        self.complete = True
        self._wake()

    def on_connection_lost(self, exc: Exception | None) -> None:
        if self.complete or self.error is not None:
            return
        if self.headers_done and self.close_delimited and exc is None:
            self.complete = True
        elif not self.received_any:
            self.error = UpstreamResetError(
                "the upstream closed the connection before answering", after_first_byte=False
            )
        else:
            self.error = UpstreamResetError(
                "the upstream connection was lost mid-response", after_first_byte=True
            )
        self._wake()

    def fail(self, error: UpstreamError) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self._wake()

    # waiting

    async def _wait(self) -> None:
        loop = self._loop
        waiter = loop.create_future()
        self._waiter = waiter
        self._wait_start = now = loop.time()
        conn = self._conn
        if conn is not None:
            conn.watch(now + self._read_timeout)
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def check_idle(self, conn: LeanConnection) -> None:
        """Called by the connection's timer: fail the wait if nothing came for too long."""
        if self._waiter is None or self._conn is not conn:
            return
        # Bytes that arrived while the consumer was busy elsewhere do not count as activity.
        deadline = max(conn.last_rx, self._wait_start) + self._read_timeout
        if deadline > self._loop.time():
            conn.watch(deadline)
            return
        what = "between body pieces" if self.headers_done else "for the response to start"
        self.fail(
            UpstreamTimeoutError(f"the upstream sent nothing for {self._read_timeout:g}s {what}")
        )
        conn.abort()

    def _resume(self) -> None:
        conn = self._conn
        if conn is not None:
            self._resume_conn(conn)

    def _resume_conn(self, conn: LeanConnection) -> None:
        self._paused = False
        if conn.transport is not None and not conn.closed:
            conn.transport.resume_reading()


_EMPTY_HEADERS: Final[CIMultiDictProxy[str]] = CIMultiDictProxy(CIMultiDict())
